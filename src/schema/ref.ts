import { RefKind } from '../generated/prisma/enums.js';
import { builder } from './builder.js';

const RefKindEnum = builder.enumType(RefKind, { name: 'RefKind' });

const Ref = builder.prismaObject('Ref', {
  description: 'A branch or tag as upstream listed it at the last check',
  fields: (t) => ({
    name: t.exposeString('name'),
    kind: t.expose('kind', { type: RefKindEnum }),
    sha: t.exposeString('sha'),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.prismaObjectField('Repository', 'refs', (t) =>
  t.relation('refs', {
    type: Ref,
    args: { kind: t.arg({ type: RefKindEnum }) },
    query: (args) => ({
      where: args.kind ? { kind: args.kind } : {},
      orderBy: [{ kind: 'asc' }, { name: 'asc' }],
    }),
  }),
);
