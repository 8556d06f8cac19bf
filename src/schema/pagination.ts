import { BadUserInputError } from '../errors.js';

export const maxPageSize = 100;

/** Connection size options: a page over the cap is refused, not silently cut. */
export const pageSize = {
  defaultSize: 20,
  maxSize: (args: { first?: number | null; last?: number | null }) => {
    for (const [name, value] of [['first', args.first], ['last', args.last]] as const) {
      if (value != null && (value < 0 || value > maxPageSize)) {
        throw new BadUserInputError(`${name} must be between 0 and ${maxPageSize}`);
      }
    }
    return maxPageSize;
  },
};
