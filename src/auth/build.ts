// Builds the auth handler and its resolver from configuration: shared by the daemon and the
// offline `verify` command, so both take the same path.

import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import { createResolver, type Resolver } from "../dns/index.ts";
import { hostListFromValues } from "../keys/hosts.ts";
import { VERSION } from "../version.ts";
import { AuthHandler } from "./handler.ts";

export function buildResolver(config: Config): Resolver {
  const { servers, timeoutMs, tries, cacheEntries } = config.dns;
  return createResolver({
    ...(servers.length > 0 ? { servers } : {}),
    timeoutMs,
    tries,
    cache: cacheEntries === 0 ? false : { maxEntries: cacheEntries },
  });
}

export function buildAuthHandler(config: Config, resolver: Resolver, logger: Logger): AuthHandler {
  return new AuthHandler(
    {
      version: VERSION,
      hostname: config.hostname,
      authservId: config.authservId,
      softwareHeader: config.verify.softwareHeader,
      internalHosts: hostListFromValues(config.internalHosts, "internalHosts"),
      spfSelfValidate: config.verify.spfSelfValidate,
      spfIgnoreResults: config.verify.spfIgnoreResults,
      trustedAuthservIds: config.verify.trustedAuthservIds,
      ignoreAuthenticatedClients: config.verify.ignoreAuthenticatedClients,
    },
    resolver.mailauth,
    logger,
  );
}
