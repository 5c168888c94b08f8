// What a message needs from configuration, as one value: replaced whole on reload, while a
// message in flight keeps the one it started with.

import type { Config } from "../config/schema.ts";
import type { HostList } from "../keys/hosts.ts";
import type { SigningSetup } from "../keys/signing-setup.ts";
import type { DmarcEnforcement, FailureActions } from "./policy.ts";
import type { SignOptions } from "./sign.ts";

export interface AuthSettings {
  readonly version: string;
  readonly hostname: string;
  readonly authservId: string;
  readonly sign: boolean;
  readonly verify: boolean;
  readonly softwareHeader: boolean;
  readonly internalHosts: HostList;
  readonly externalIgnoreList: HostList;
  readonly submissionDaemons: readonly string[];
  readonly author: "from" | "sender" | "mailfrom";
  readonly signOptions: SignOptions;
  readonly spfSelfValidate: boolean;
  readonly spfIgnoreResults: boolean;
  readonly trustedAuthservIds: readonly string[];
  readonly ignoreAuthenticatedClients: boolean;
  readonly requiredHeaders: boolean;
  readonly dmarc: DmarcEnforcement;
  /** opendmarc's IgnoreHosts: clients whose mail DMARC never acts on. */
  readonly dmarcIgnoreHosts: HostList;
  readonly actions: FailureActions;
  readonly limits: Config["limits"];
  /** The pct= sample draw; Math.random in the daemon. */
  readonly random: () => number;
  /** opendkim's SyslogSuccess and LogWhy: those lines at info, else at debug. */
  readonly logSuccess: boolean;
  readonly logWhy: boolean;
}

/** Everything a message needs from configuration; replaced whole on reload. */
export interface AuthState {
  readonly settings: AuthSettings;
  readonly signing: SigningSetup;
}
