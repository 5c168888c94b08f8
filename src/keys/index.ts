// The key layer: opendkim's tables and host lists, private keys, key records and generation.

export { KeyError, RecordError, TableError, type KeyErrorCode } from "./errors.ts";
export { datasetLines, parseDatasetSpec, readDatasetFile, type DatasetLine, type DatasetSpec } from "./dataset.ts";
export {
  findSigningKeys,
  isValidDomainName,
  loadKeyTable,
  loadSigningTable,
  parseKeyTable,
  parseSigningTable,
  validateSigningTable,
  type KeySource,
  type KeyTable,
  type KeyTableEntry,
  type KeyTableOptions,
  type SigningLookupOptions,
  type SigningRequest,
  type SigningTable,
  type SigningTableEntry,
} from "./tables.ts";
export { openHostList, openKeyTable, openSigningTable } from "./open.ts";
export { DEFAULT_INTERNAL_HOSTS, hostListFromValues, loadHostList, matchesHost, parseHostList, type HostList } from "./hosts.ts";
export {
  DEFAULT_MINIMUM_KEY_BITS,
  loadKeyFile,
  loadKeySource,
  mailauthSignatureData,
  parsePrivateKey,
  publicKeyDnsValue,
  type DkimAlgorithm,
  type DkimKeyType,
  type LoadKeyOptions,
  type MailauthSignatureData,
  type SigningKey,
} from "./load.ts";
export {
  buildDkimTxtRecord,
  checkKeyAgainstRecord,
  formatZoneEntry,
  parseDkimKeyRecord,
  parseZoneEntry,
  type DkimKeyRecord,
  type DkimRecordOptions,
  type DkimTxtRecord,
  type KeyRecordCheck,
  type ZoneEntry,
  type ZoneEntryOptions,
} from "./record.ts";
export { DEFAULT_RSA_BITS, MAX_RSA_BITS, MIN_RSA_BITS, generateKey, type GenerateKeyOptions, type GeneratedKey } from "./genkey.ts";
