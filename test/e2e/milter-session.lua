-- A second, independent milter client: Debian's miltertest (from OpenDKIM) drives authmilter.
-- Run: miltertest -D socket=inet:PORT@127.0.0.1 -s test/e2e/milter-session.lua
-- Each failed check raises an error, and miltertest exits non-zero.

local function check(ok, what)
  if not ok then error("FAILED: " .. what) end
  mt.echo("ok: " .. what)
end

local function nilok(result, what)
  if result ~= nil then error("FAILED: " .. what .. ": " .. tostring(result)) end
end

mt.set_timeout(10)

-- Mail from outside: verified, a forged Authentication-Results removed, ours added.
local conn = mt.connect(socket, 25, 0.2)
check(conn ~= nil, "connect to " .. socket)
nilok(mt.negotiate(conn, nil, nil, nil), "negotiate")
check(mt.test_action(conn, SMFIF_ADDHDRS), "ADDHDRS negotiated")
check(mt.test_action(conn, SMFIF_CHGHDRS), "CHGHDRS negotiated")
nilok(mt.conninfo(conn, "mail.example.org", "192.0.2.1"), "conninfo")
nilok(mt.helo(conn, "mail.example.org"), "helo")
nilok(mt.macro(conn, SMFIC_MAIL, "i", "MTQID1", "{mail_addr}", "alice@example.org"), "mail macros")
nilok(mt.mailfrom(conn, "<alice@example.org>"), "mail from")
nilok(mt.rcptto(conn, "<bob@example.com>"), "rcpt to")
nilok(mt.header(conn, "Authentication-Results", "mx.example.com; dkim=pass header.d=example.org"), "forged A-R")
nilok(mt.header(conn, "From", "Alice <alice@example.org>"), "From")
nilok(mt.header(conn, "Date", "Thu, 26 Nov 2026 06:00:00 +0000"), "Date")
nilok(mt.header(conn, "Subject", "a folded\n\tsubject"), "Subject")
nilok(mt.eoh(conn), "eoh")
nilok(mt.bodystring(conn, "Hello Bob.\r\n"), "body")
nilok(mt.eom(conn), "eom")
check(mt.getreply(conn) == SMFIR_CONTINUE, "end of message answered CONTINUE")
check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "Authentication-Results inserted")
check(mt.eom_check(conn, MT_HDRINSERT, "Authmilter-Filter"), "Authmilter-Filter inserted")
check(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results") or mt.eom_check(conn, MT_HDRCHANGE, "Authentication-Results"), "forged Authentication-Results removed")
local ar = mt.getheader(conn, "Authentication-Results", 0)
check(ar ~= nil and string.find(ar, "spf=pass smtp.mailfrom=example.org", 1, true) ~= nil, "A-R says spf=pass: " .. tostring(ar))
check(string.find(ar, "dmarc=pass", 1, true) ~= nil, "A-R says dmarc=pass")

-- A second message on the same connection after ABORT: nothing of the first one leaks.
nilok(mt.abort(conn), "abort")
nilok(mt.macro(conn, SMFIC_MAIL, "i", "MTQID2", "{mail_addr}", "ceo@example.org"), "mail macros 2")
nilok(mt.mailfrom(conn, "<ceo@example.org>"), "mail from 2")
nilok(mt.rcptto(conn, "<bob@example.com>"), "rcpt to 2")
nilok(mt.header(conn, "From", "ceo@example.org"), "From 2")
nilok(mt.header(conn, "Date", "Thu, 26 Nov 2026 06:00:00 +0000"), "Date 2")
nilok(mt.eoh(conn), "eoh 2")
nilok(mt.bodystring(conn, "Second.\r\n"), "body 2")
nilok(mt.eom(conn), "eom 2")
check(mt.getreply(conn) == SMFIR_CONTINUE, "second message answered CONTINUE")
check(not (mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results") or mt.eom_check(conn, MT_HDRCHANGE, "Authentication-Results")), "nothing removed from the second message")
local filter = mt.getheader(conn, "Authmilter-Filter", 0)
check(filter ~= nil and string.find(filter, "MTQID2", 1, true) ~= nil, "second message carries its own queue id: " .. tostring(filter))
mt.disconnect(conn)

-- Mail from an internal host: signed.
local inside = mt.connect(socket, 25, 0.2)
check(inside ~= nil, "connect again")
nilok(mt.negotiate(inside, nil, nil, nil), "negotiate 2")
nilok(mt.conninfo(inside, "localhost", "127.0.0.1"), "conninfo internal")
nilok(mt.helo(inside, "localhost"), "helo internal")
nilok(mt.macro(inside, SMFIC_MAIL, "i", "MTQID3", "{mail_addr}", "carol@example.com"), "mail macros 3")
nilok(mt.mailfrom(inside, "<carol@example.com>"), "mail from 3")
nilok(mt.rcptto(inside, "<dave@example.net>"), "rcpt to 3")
nilok(mt.header(inside, "From", "Carol <carol@example.com>"), "From 3")
nilok(mt.header(inside, "Subject", "from inside"), "Subject 3")
nilok(mt.eoh(inside), "eoh 3")
nilok(mt.bodystring(inside, "Signed on the way out.\r\n"), "body 3")
nilok(mt.eom(inside), "eom 3")
check(mt.getreply(inside) == SMFIR_CONTINUE, "internal message answered CONTINUE")
check(mt.eom_check(inside, MT_HDRINSERT, "DKIM-Signature"), "DKIM-Signature inserted")
local sig = mt.getheader(inside, "DKIM-Signature", 0)
check(sig ~= nil and string.find(sig, "d=example.com;", 1, true) ~= nil and string.find(sig, "s=mt1;", 1, true) ~= nil, "signature names d= and s=")
mt.disconnect(inside)
mt.echo("all checks passed")
