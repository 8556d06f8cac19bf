import { BadUserInputError, ConflictError, NotFoundError } from '../errors.js';
import { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import { builder } from './builder.js';
import { parseGlobalId } from './globalId.js';
import { pageSize } from './pagination.js';
import { RepositoryConnection } from './repository.js';

export const Project = builder.prismaNode('Project', {
  id: { field: 'id' },
  // An absent or foreign object resolves to null (Relay), not an error.
  nullable: true,
  findUnique: (id, ctx) => ({ id, tenantId: ctx.tenantId }),
  fields: (t) => ({
    name: t.exposeString('name'),
    repositories: t.relatedConnection(
      'repositories',
      { cursor: 'id', ...pageSize, query: { orderBy: { createdAt: 'desc' } } },
      RepositoryConnection,
    ),
  }),
});

export const ProjectConnection = builder.connectionObject({ type: Project, name: 'ProjectConnection' }, { name: 'ProjectEdge' });

builder.queryFields((t) => ({
  project: t.prismaField({
    type: 'Project',
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const project = await ctx.prisma.project.findFirst({
        ...query,
        where: { id: parseGlobalId(args.id, 'Project'), tenantId: ctx.tenantId },
      });
      if (!project) throw new NotFoundError('project');
      return project;
    },
  }),
  projects: t.prismaConnection(
    {
      type: 'Project',
      cursor: 'id',
      ...pageSize,
      resolve: (query, _root, _args, ctx) =>
        ctx.prisma.project.findMany({ ...query, where: { tenantId: ctx.tenantId }, orderBy: { createdAt: 'desc' } }),
    },
    ProjectConnection,
  ),
}));

builder.relayMutationField(
  'createProject',
  { inputFields: (t) => ({ name: t.string({ required: true }) }) },
  {
    resolve: async (_root, { input }, ctx) => {
      const name = input.name.trim();
      if (!name || name.length > 100 || /[\u0000-\u001f\u007f]/.test(name)) {
        throw new BadUserInputError('project name must be 1-100 printable characters');
      }
      try {
        return { project: await ctx.prisma.project.create({ data: { name, tenantId: ctx.tenantId } }) };
      } catch (error) {
        if (error instanceof PrismaNamespace.PrismaClientKnownRequestError && error.code === 'P2002') {
          throw new ConflictError(`a project named "${name}" already exists`);
        }
        throw error;
      }
    },
  },
  { outputFields: (t) => ({ project: t.field({ type: Project, resolve: (payload) => payload.project }) }) },
);
