// Sendmail milter protocol v6 constants, named as libmilter names them so that the spec
// (shared/reference/milter-protocol.md) and the code read side by side.

export const SMFI_VERSION = 6;

// Commands, MTA → milter.
export const SMFIC_ABORT = 0x41; // 'A'
export const SMFIC_BODY = 0x42; // 'B'
export const SMFIC_CONNECT = 0x43; // 'C'
export const SMFIC_MACRO = 0x44; // 'D'
export const SMFIC_BODYEOB = 0x45; // 'E'
export const SMFIC_HELO = 0x48; // 'H'
export const SMFIC_QUIT_NC = 0x4b; // 'K'
export const SMFIC_HEADER = 0x4c; // 'L'
export const SMFIC_MAIL = 0x4d; // 'M'
export const SMFIC_EOH = 0x4e; // 'N'
export const SMFIC_OPTNEG = 0x4f; // 'O'
export const SMFIC_QUIT = 0x51; // 'Q'
export const SMFIC_RCPT = 0x52; // 'R'
export const SMFIC_DATA = 0x54; // 'T'
export const SMFIC_UNKNOWN = 0x55; // 'U'

// Replies, milter → MTA.
export const SMFIR_ADDRCPT = 0x2b; // '+'
export const SMFIR_DELRCPT = 0x2d; // '-'
export const SMFIR_ADDRCPT_PAR = 0x32; // '2'
export const SMFIR_SHUTDOWN = 0x34; // '4'
export const SMFIR_ACCEPT = 0x61; // 'a'
export const SMFIR_REPLBODY = 0x62; // 'b'
export const SMFIR_CONTINUE = 0x63; // 'c'
export const SMFIR_DISCARD = 0x64; // 'd'
export const SMFIR_CHGFROM = 0x65; // 'e'
export const SMFIR_CONN_FAIL = 0x66; // 'f'
export const SMFIR_ADDHEADER = 0x68; // 'h'
export const SMFIR_INSHEADER = 0x69; // 'i'
export const SMFIR_SETSYMLIST = 0x6c; // 'l'
export const SMFIR_CHGHEADER = 0x6d; // 'm'
export const SMFIR_PROGRESS = 0x70; // 'p'
export const SMFIR_QUARANTINE = 0x71; // 'q'
export const SMFIR_REJECT = 0x72; // 'r'
export const SMFIR_SKIP = 0x73; // 's'
export const SMFIR_TEMPFAIL = 0x74; // 't'
export const SMFIR_REPLYCODE = 0x79; // 'y'
export const SMFIR_OPTNEG = 0x4f; // 'O'

// Actions the milter may take at end of message (SMFIF_*).
export const SMFIF_ADDHDRS = 0x001;
export const SMFIF_CHGBODY = 0x002;
export const SMFIF_ADDRCPT = 0x004;
export const SMFIF_DELRCPT = 0x008;
export const SMFIF_CHGHDRS = 0x010;
export const SMFIF_QUARANTINE = 0x020;
export const SMFIF_CHGFROM = 0x040;
export const SMFIF_ADDRCPT_PAR = 0x080;
export const SMFIF_SETSYMLIST = 0x100;

// What an MTA that sends 0 means (libmilter: a version-1 MTA's implicit set).
export const SMFI_V1_ACTS = SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT;

// Protocol steps (SMFIP_*): NO* = "don't send", NR_* = "I will not reply".
export const SMFIP_NOCONNECT = 0x000001;
export const SMFIP_NOHELO = 0x000002;
export const SMFIP_NOMAIL = 0x000004;
export const SMFIP_NORCPT = 0x000008;
export const SMFIP_NOBODY = 0x000010;
export const SMFIP_NOHDRS = 0x000020;
export const SMFIP_NOEOH = 0x000040;
export const SMFIP_NR_HDR = 0x000080;
export const SMFIP_NOUNKNOWN = 0x000100;
export const SMFIP_NODATA = 0x000200;
export const SMFIP_SKIP = 0x000400;
export const SMFIP_RCPT_REJ = 0x000800;
export const SMFIP_NR_CONN = 0x001000;
export const SMFIP_NR_HELO = 0x002000;
export const SMFIP_NR_MAIL = 0x004000;
export const SMFIP_NR_RCPT = 0x008000;
export const SMFIP_NR_DATA = 0x010000;
export const SMFIP_NR_UNKN = 0x020000;
export const SMFIP_NR_EOH = 0x040000;
export const SMFIP_NR_BODY = 0x080000;
export const SMFIP_HDR_LEADSPC = 0x100000;

export const SMFI_V1_PROT =
  SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS;

// Macro stage numbers used in the OPTNEG reply's macro lists (note EOM < EOH).
export const SMFIM_CONNECT = 0;
export const SMFIM_HELO = 1;
export const SMFIM_ENVFROM = 2;
export const SMFIM_ENVRCPT = 3;
export const SMFIM_DATA = 4;
export const SMFIM_EOM = 5;
export const SMFIM_EOH = 6;

// Postfix never sends BODY chunks larger than this; our own REPLBODY chunks stay below it too.
export const MILTER_CHUNK_SIZE = 65_535;
