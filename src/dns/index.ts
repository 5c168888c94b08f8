export { createResolver, interpret, RESOLVER_DEFAULTS } from "./resolver.ts";
export type { CacheLimits, LookupType, Resolver, ResolverOptions, ResolverStats, ResultMap } from "./resolver.ts";
export { DnsError, isNoRecord } from "./errors.ts";
export type { DnsErrorCode } from "./errors.ts";
export { formatServer, parseServer, systemServers } from "./client.ts";
export type { MxData, SoaData } from "./wire.ts";
