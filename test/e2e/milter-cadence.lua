-- The rhythm of Postfix's milter traffic (reference/milter-protocol.md §9-10), which
-- milter-session.lua (what the daemon decides) does not cover:
-- macros before each event, a folded header, several messages on one connection with ABORTs
-- between them (twice in a row after a completed message, once mid-headers), the queue id
-- `i` once at MAIL (non-SMTP style) and once only at end of message (SMTP style), then a second
-- connection after QUIT.
--
-- Globals from miltertest -D:
--   socket           where the milter listens, e.g. inet:8891@127.0.0.1
--   header_name      the software header, e.g. Authmilter-Filter
--   expected_prefix  its value without the queue id: "authmilter VERSION HOSTNAME"
-- Exit status 0 and the last line "milter-cadence: all checks passed" mean success.

if socket == nil then error("pass -D socket=inet:PORT@127.0.0.1") end
if header_name == nil then error("pass -D header_name=NAME") end
if expected_prefix == nil then error("pass -D expected_prefix='authmilter VERSION HOSTNAME'") end

local function fail(what)
	error("milter-cadence: FAILED: " .. what, 0)
end

-- miltertest functions return nil on success and an error string otherwise.
local function step(err, what)
	if err ~= nil then fail(what .. ": " .. tostring(err)) end
end

local function expect_reply(conn, what, ...)
	local reply = mt.getreply(conn)
	for _, allowed in ipairs({ ... }) do
		if reply == allowed then return end
	end
	fail(string.format("%s: unexpected milter reply '%s'", what, string.char(reply)))
end

-- With HDR_LEADSPC both sides carry the space after the colon inside the value.
local leadspc = false
local function hvalue(value)
	if leadspc then return " " .. value end
	return value
end

local function open_connection()
	local conn = mt.connect(socket, 40, 0.25)
	if conn == nil then fail("cannot connect to " .. socket) end
	step(mt.negotiate(conn, nil, nil, nil), "negotiate")
	if not mt.test_action(conn, SMFIF_ADDHDRS) then fail("milter did not ask for SMFIF_ADDHDRS") end
	leadspc = mt.test_option(conn, SMFIP_HDR_LEADSPC)

	mt.macro(conn, SMFIC_CONNECT,
		"j", "mx.authmilter.test",
		"{daemon_name}", "mx.authmilter.test",
		"{daemon_addr}", "127.0.0.1",
		"v", "Postfix 3.7.11",
		"{client_addr}", "192.0.2.1",
		"{client_name}", "mail.example.org",
		"{client_ptr}", "mail.example.org",
		"_", "mail.example.org [192.0.2.1]")
	step(mt.conninfo(conn, "mail.example.org", "192.0.2.1"), "conninfo")
	expect_reply(conn, "connect", SMFIR_CONTINUE)
	step(mt.helo(conn, "mail.example.org"), "helo")
	expect_reply(conn, "helo", SMFIR_CONTINUE)
	return conn
end

local function envelope(conn, qid_at_mail)
	if qid_at_mail ~= nil then
		mt.macro(conn, SMFIC_MAIL, "i", qid_at_mail, "{mail_addr}", "alice@example.org")
	else
		mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "alice@example.org")
	end
	step(mt.mailfrom(conn, "<alice@example.org>", "BODY=8BITMIME"), "mailfrom")
	expect_reply(conn, "mailfrom", SMFIR_CONTINUE)
	mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", "bob@example.com")
	step(mt.rcptto(conn, "<bob@example.com>"), "rcptto")
	expect_reply(conn, "rcptto", SMFIR_CONTINUE)
end

local function header(conn, name, value)
	step(mt.header(conn, name, hvalue(value)), "header " .. name)
	expect_reply(conn, "header " .. name, SMFIR_CONTINUE)
end

-- Sends one whole message; `qid_at_mail` or `qid_at_eom` says where the queue id macro goes.
local function message(conn, qid_at_mail, qid_at_eom, subject)
	envelope(conn, qid_at_mail)
	header(conn, "Received", "from mail.example.org (mail.example.org [192.0.2.1])\n\tby mx.authmilter.test (Postfix) with ESMTP")
	header(conn, "From", "Alice <alice@example.org>")
	header(conn, "To", "Bob <bob@example.com>")
	-- Folded the way Postfix hands it over: LF plus TAB, no CR.
	header(conn, "Subject", subject .. "\n\tcontinued on a second line")
	header(conn, "Date", "Thu, 26 Nov 2026 06:49:36 +0000")
	header(conn, "Message-ID", "<" .. subject .. "@example.org>")
	step(mt.eoh(conn), "eoh")
	expect_reply(conn, "eoh", SMFIR_CONTINUE)
	step(mt.bodystring(conn, "Hello Bob,\r\n\r\nthis is " .. subject .. ".\r\n"), "body")
	expect_reply(conn, "body", SMFIR_CONTINUE, SMFIR_SKIP)
	if qid_at_eom ~= nil then
		mt.macro(conn, string.byte("E"), "i", qid_at_eom)
	end
	step(mt.eom(conn), "eom")
	expect_reply(conn, "eom", SMFIR_CONTINUE, SMFIR_ACCEPT)
end

-- Exactly one software header edit at this EOM, carrying `qid`.
local function check_header(conn, qid, what)
	if not (mt.eom_check(conn, MT_HDRINSERT, header_name) or mt.eom_check(conn, MT_HDRADD, header_name)) then
		fail(what .. ": no " .. header_name .. " header added or inserted")
	end
	local count = 0
	while mt.getheader(conn, header_name, count) ~= nil do count = count + 1 end
	if count ~= 1 then fail(string.format("%s: %d %s headers, expected 1", what, count, header_name)) end
	local value = mt.getheader(conn, header_name, 0)
	if leadspc then value = string.gsub(value, "^ ", "") end
	local expected = expected_prefix .. " " .. qid
	if value ~= expected then
		fail(string.format("%s: %s is '%s', expected '%s'", what, header_name, value, expected))
	end
	mt.echo(what .. ": " .. header_name .. ": " .. value)
end

local function main()
local conn = open_connection()

message(conn, "4ABC0000A1", nil, "first message")
check_header(conn, "4ABC0000A1", "message 1 (queue id at MAIL)")

-- Postfix sends ABORT after every completed message, sometimes twice.
step(mt.abort(conn), "abort after message 1")
step(mt.abort(conn), "second abort after message 1")

-- A transaction given up in the middle of the headers (client RSET or disconnect).
envelope(conn, "4ABC0000B2")
header(conn, "From", "Alice <alice@example.org>")
header(conn, "Subject", "never finished")
step(mt.abort(conn), "abort in the headers of message 2")

message(conn, nil, "4ABC0000C3", "third message")
check_header(conn, "4ABC0000C3", "message 3 (queue id only at end of message)")
step(mt.abort(conn), "abort after message 3")

mt.disconnect(conn)

-- The milter must serve a new connection after a polite QUIT.
local again = open_connection()
message(again, "4ABC0000D4", nil, "message on a new connection")
check_header(again, "4ABC0000D4", "message 4 (second connection)")
mt.disconnect(again)
end

-- Debian's miltertest does not print the message of an error that ends the script, so catch
-- it here, print it, and fail with it.
mt.set_timeout(20)
local ok, err = pcall(main)
if not ok then
	mt.echo(tostring(err))
	error(err, 0)
end
mt.echo("milter-cadence: all checks passed")
