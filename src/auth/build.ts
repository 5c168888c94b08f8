// Builds the auth handler's state and resolver from configuration: shared by the daemon (at
// start and on reload), `config check` and the offline `verify` command, so all take one path.

import type { DNSResolver } from "mailauth";
import type { Logger } from "pino";
import type { AuthMetrics } from "../ops/metrics.ts";
import type { Config } from "../config/schema.ts";
import { createResolver, type Resolver } from "../dns/index.ts";
import { readFileSync } from "node:fs";
import { hostListFromSources } from "../keys/hosts.ts";
import { loadSigningSetup } from "../keys/signing-setup.ts";
import { VERSION } from "../version.ts";
import { AuthHandler, type AuthState, type HandlerExtras } from "./handler.ts";

export function buildResolver(config: Config): Resolver {
  const { servers, timeoutMs, tries, cacheEntries } = config.dns;
  return createResolver({
    ...(servers.length > 0 ? { servers } : {}),
    timeoutMs,
    tries,
    cache: cacheEntries === 0 ? false : { maxEntries: cacheEntries },
  });
}

function hosts(values: readonly string[], setting: string) {
  return hostListFromSources(values, setting, (path) => readFileSync(path, "utf8"));
}

/** Loads every key and table the configuration names; throws on the first that fails. */
export async function buildAuthState(config: Config): Promise<AuthState> {
  const s = config.signing;
  const signing = await loadSigningSetup(s);
  return {
    signing,
    settings: {
      version: VERSION,
      hostname: config.hostname,
      authservId: config.authservId,
      sign: config.mode !== "verify",
      verify: config.mode !== "sign",
      softwareHeader: config.verify.softwareHeader,
      internalHosts: hosts(config.internalHosts, "internalHosts"),
      externalIgnoreList: hosts(config.externalIgnoreList, "externalIgnoreList"),
      submissionDaemons: s.submissionDaemons,
      author: s.author,
      signOptions: {
        canonicalization: s.canonicalization,
        ...(s.headers.length > 0 ? { headers: s.headers } : {}),
        ...(s.oversign ? { oversign: s.oversign } : {}),
        ...(s.expireMs > 0 ? { expireSeconds: Math.ceil(s.expireMs / 1000) } : {}),
      },
      spfSelfValidate: config.verify.spfSelfValidate,
      spfIgnoreResults: config.verify.spfIgnoreResults,
      trustedAuthservIds: config.verify.trustedAuthservIds,
      ignoreAuthenticatedClients: config.verify.ignoreAuthenticatedClients,
      requiredHeaders: config.policy.requiredHeaders,
      dmarc: config.policy.dmarc,
      dmarcIgnoreHosts: hosts(config.policy.dmarc.ignoreHosts, "policy.dmarc.ignoreHosts"),
      actions: config.actions,
      limits: config.limits,
      random: Math.random,
      logSuccess: config.log.success,
      logWhy: config.log.why,
    },
  };
}

export async function buildAuthHandler(
  config: Config,
  resolver: Resolver,
  logger: Logger,
  extras: HandlerExtras = {},
): Promise<AuthHandler> {
  const resolve = extras.metrics ? timed(resolver.mailauth, extras.metrics) : resolver.mailauth;
  return new AuthHandler(await buildAuthState(config), resolve, logger, extras);
}

/** The resolver as mailauth calls it, with each lookup's time observed. */
function timed(resolve: DNSResolver, metrics: AuthMetrics): DNSResolver {
  return async (name, rrtype) => {
    const started = performance.now();
    try {
      return await resolve(name, rrtype);
    } finally {
      metrics.dnsSeconds.observe((performance.now() - started) / 1000, { type: rrtype });
    }
  };
}
