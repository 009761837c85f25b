#!/usr/bin/env python3
"""The floor: what the mail stack itself allows for fetch / reply / move, with no parsing at all.

Every message in the intake INBOX is fetched, answered with a short fixed reply and moved to
Processed, using the best simple techniques: one IMAP connection, UID FETCH of many messages in
one command, one SMTP connection reused for every reply, UID MOVE of a whole set. The reply's
address and In-Reply-To are cut from the header bytes with a regular expression; nothing else is
read. Whatever iapt-intake does beyond this is its own work.

Usage: BENCH_STACK_ENV=FILE floor.py [--batch 100]
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchkit as bk  # noqa: E402

FROM = re.compile(rb"^From:[^\r\n]*?<?([^<>\s\"]+@[^<>\s\"]+)>?\s*$", re.I | re.M)
MSGID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.I | re.M)
REPLY_FROM = "iapt.returns@example.nhs.test"


def reply(to, msgid):
    return (
        f"From: IAPT KPI Returns <{REPLY_FROM}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: Re: your IAPT KPI return\r\n"
        f"In-Reply-To: {msgid}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"\r\n"
        f"Received, thank you.\r\n"
    ).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=100)
    a = ap.parse_args()
    env = bk.stack_env()
    imap = bk.intake_login(env)
    smtp = bk.smtp_connect(env)
    bk.check(imap.select("INBOX"), "SELECT")
    todo = bk.uids(imap)
    for k in range(0, len(todo), a.batch):
        chunk = b",".join(todo[k : k + a.batch])
        data = bk.check(imap.uid("FETCH", chunk, "(BODY.PEEK[])"), "UID FETCH")
        for item in data:
            if not isinstance(item, tuple):
                continue
            head = item[1].split(b"\r\n\r\n", 1)[0]
            sender = FROM.search(head).group(1).decode()
            msgid = MSGID.search(head).group(1).decode()
            smtp.sendmail(REPLY_FROM, [sender], reply(sender, msgid))
        bk.check(imap.uid("MOVE", chunk, bk.PROCESSED_FOLDER), "UID MOVE")
    smtp.quit()
    imap.logout()
    print(f"floor: {len(todo)} messages fetched, answered and moved")


if __name__ == "__main__":
    main()
