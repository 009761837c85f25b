#!/usr/bin/env python3
"""Build the bundled sample mailbox (examples/mailbox/*.eml) that the README's first command runs
the daemon on: a good return, a bad one, a resubmission, a CSV return, a technical and a content
question, a subject without IAPT, an unregistered sender, an out-of-office reply, a bounce of
one of our own replies, a forged return in Leeds' name, and a return sent zipped.

Each message carries the Authentication-Results header that the mailbox's receiving server
(mx.example.nhs.test, trusted by config/iapt-intake.toml) adds: dkim=pass for the sender's own
domain, except the forged return, whose signature the server found wrong.

Needs: the built binary (for the blank templates) and openpyxl (to fill them in as an analyst
would). The outputs are committed, so nobody needs either to run the demo.

    cargo build && python3 examples/make-mailbox.py
"""
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone

import openpyxl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "examples", "mailbox")
BIN = os.path.join(ROOT, "target", "debug", "iapt-intake")
INTAKE = "iapt.returns@example.nhs.test"
# Must match config/iapt-intake.toml's [outbound] from: our reply Message-IDs use its domain.
OUR_DOMAIN = "example.nhs.test"
# The receiving server whose Authentication-Results the embedded default trusts.
MX = "mx.example.nhs.test"

LEEDS = dict(KPI1=68653, KPI2=1432, KPI3a=212, KPI3b=388, KPI4=2710, KPI5=1104, KPI6=441,
             KPI6b=96, KPI7=37)
LEEDS_FIXED = dict(LEEDS, KPI4=2736, KPI6=452)
# Bradford's first try: KPI2 blank, KPI3a typed with a decimal, KPI6 more than KPI5 - KPI6b.
BRADFORD_BAD = dict(KPI1=45210, KPI2=None, KPI3a="140.5", KPI3b=310, KPI4=1820, KPI5=760,
                    KPI6=720, KPI6b=90, KPI7=12)


def filled_return(period, org, values):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.xlsx")
        subprocess.run([BIN, "template", "--config", os.path.join(ROOT, "config/iapt-intake.toml"),
                        "--period", period, "--org", org, "-o", path], check=True, cwd=ROOT,
                       stderr=subprocess.DEVNULL)
        wb = openpyxl.load_workbook(path)
    ws = wb["Return"]
    value_col = None
    for row in ws.iter_rows():
        a = row[0].value
        if isinstance(a, str) and a.strip().upper() == "KPI":
            value_col = next(c.column for c in row if isinstance(c.value, str)
                             and c.value.strip().lower().startswith("value"))
            continue
        if value_col and isinstance(a, str) and a.strip() in values:
            ws.cell(row=row[0].row, column=value_col, value=values[a.strip()])
        if isinstance(a, str) and a.strip().lower() == "contact name":
            ws.cell(row=row[0].row, column=2, value="Ann Analyst")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def message(name, sender, subject, when, body, attachments=(), headers=None, dkim="pass"):
    m = EmailMessage()
    domain = sender.split("@")[-1].rstrip(">")
    m["Authentication-Results"] = f"{MX}; dkim={dkim} header.d={domain} header.s=mail2011"
    m["From"] = sender
    m["To"] = f"IAPT KPI Returns <{INTAKE}>"
    m["Subject"] = subject
    m["Date"] = format_datetime(when)
    m["Message-ID"] = make_msgid(idstring=name, domain=sender.split("@")[-1].rstrip(">"))
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(body)
    for filename, data, maintype, subtype in attachments:
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes()


def write(name, raw):
    with open(os.path.join(OUT, name + ".eml"), "wb") as f:
        f.write(raw)
    return raw


XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build")
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".eml"):
            os.remove(os.path.join(OUT, f))
    t = lambda d, h, m=0: datetime(2011, 7, d, h, m, tzinfo=timezone.utc)

    write("01-leeds-return", message(
        "leeds-q1", "Ann Analyst <ann.analyst@leeds.nhs.test>", "IAPT KPI Q1 2011/12 Leeds PCT",
        t(12, 9, 15), "Please find attached our IAPT KPI return for Q1 2011/12.\n\nAnn",
        [("Leeds IAPT KPI Q1 2011-12.xlsx", filled_return("2011-12-Q1", "5N1", LEEDS), *XLSX)]))
    bad = write("02-bradford-return-with-errors", message(
        "bradford-q1", "Raj Patel <r.patel@bradford-and-airedale.nhs.test>",
        "IAPT return Q1 2011/12 - 5NY", t(12, 11, 2), "Our Q1 return attached.\n\nRaj",
        [("5NY_Q1.xlsx", filled_return("2011-12-Q1", "5NY", BRADFORD_BAD), *XLSX)]))
    write("03-leeds-resubmission", message(
        "leeds-q1-v2", "Ann Analyst <ann.analyst@leeds.nhs.test>",
        "RE: IAPT KPI Q1 2011/12 Leeds PCT - corrected", t(13, 14, 40),
        "Corrected KPI4 and KPI6 attached; please replace our earlier return.\n\nAnn",
        [("Leeds IAPT KPI Q1 2011-12 v2.xlsx", filled_return("2011-12-Q1", "5N1", LEEDS_FIXED), *XLSX)]))
    csv = ("Organisation code,5N4\nOrganisation name,Sheffield PCT\nReporting period,Q1 2011/12\n"
           "KPI1,55821\nKPI2,1288\nKPI3a,98\nKPI3b,175\nKPI4,2150\nKPI5,930\nKPI6,398\n"
           "KPI6b,85\nKPI7,22\n").encode()
    write("04-sheffield-csv-return", message(
        "sheffield-q1", "Sam Jones <sam.jones@sheffield.nhs.test>", "IAPT Sheffield Q1 2011/12",
        t(14, 10, 5), "Return attached as CSV.", [("sheffield-q1.csv", csv, "text", "csv")]))
    write("05-technical-question", message(
        "q-upload", "Carol Clerk <carol.clerk@leeds.nhs.test>", "IAPT Leeds - deadline for Q1?",
        t(14, 12, 0), "Hello,\n\nWhat is the deadline for submitting the Q1 return, and can we "
        "resubmit the file after it if we find an error?\n\nCarol"))
    write("06-content-question", message(
        "q-caseness", "Dan Lead <dan.lead@leeds.nhs.test>", "IAPT 5N1 question about KPI6",
        t(14, 15, 30), "Hi,\n\nFor KPI6, how is caseness defined at the final session? Do we "
        "count people who completed treatment with only one session?\n\nDan"))
    write("07-subject-without-iapt", message(
        "no-subject-rule", "Ann Analyst <ann.analyst@leeds.nhs.test>", "Q1 return",
        t(15, 8, 50), "Attached.", [("return.xlsx", filled_return("2011-12-Q1", "5N1", LEEDS), *XLSX)]))
    write("08-unregistered-sender", message(
        "unreg", "Bob Temp <bob.temp@webmail.test>", "IAPT KPI Q1 2011/12 Leeds PCT",
        t(15, 9, 30), "Sending on behalf of Leeds.",
        [("leeds.xlsx", filled_return("2011-12-Q1", "5N1", LEEDS), *XLSX)]))
    write("09-out-of-office", message(
        "ooo", "Ann Analyst <ann.analyst@leeds.nhs.test>", "Automatic reply: IAPT KPI Q1 2011/12",
        t(15, 9, 31), "I am out of the office until Monday.",
        headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}))
    # A bounce of our reply to Bradford: our reply's Message-ID is `submission.<first 24 hex of
    # the SHA-256 of the message answered>@<our domain>` (src/pipeline/mod.rs).
    ours = f"submission.{hashlib.sha256(bad).hexdigest()[:24]}@{OUR_DOMAIN}"
    dsn = EmailMessage()
    dsn["From"] = "Mail Delivery System <MAILER-DAEMON@mx.bradford-and-airedale.nhs.test>"
    dsn["To"] = INTAKE
    dsn["Subject"] = "Undelivered Mail Returned to Sender"
    dsn["Date"] = format_datetime(t(15, 10, 0))
    dsn["Message-ID"] = make_msgid(idstring="dsn", domain="mx.bradford-and-airedale.nhs.test")
    dsn["Auto-Submitted"] = "auto-replied"
    dsn.set_content("This is the mail system at host mx.bradford-and-airedale.nhs.test.\n\n"
                    "<r.patel@bradford-and-airedale.nhs.test>: mailbox full\n")
    dsn.make_mixed()
    status = EmailMessage()
    status.set_content("Reporting-MTA: dns; mx.bradford-and-airedale.nhs.test\n\n"
                       "Final-Recipient: rfc822; r.patel@bradford-and-airedale.nhs.test\n"
                       "Action: failed\nStatus: 5.2.2\n")
    dsn.attach(status)
    headers = EmailMessage()
    headers.set_content(f"From: {INTAKE}\nTo: r.patel@bradford-and-airedale.nhs.test\n"
                        f"Message-ID: <{ours}>\nSubject: Re: IAPT return Q1 2011/12 - 5NY\n")
    dsn.attach(headers)
    raw = dsn.as_bytes()
    # Turn the container into a proper DSN (RFC 3464): multipart/report with typed parts.
    raw = raw.replace(b"Content-Type: multipart/mixed;",
                      b"Content-Type: multipart/report; report-type=delivery-status;", 1)
    parts = raw.split(b"Content-Type: text/plain; charset=\"utf-8\"")
    if len(parts) == 4:
        raw = (parts[0] + b"Content-Type: text/plain; charset=\"utf-8\"" + parts[1]
               + b"Content-Type: message/delivery-status" + parts[2]
               + b"Content-Type: text/rfc822-headers" + parts[3])
    write("10-bounce-of-our-reply", raw)
    # Someone else sends "Leeds'" figures: the From is Ann's, but the receiving server found no
    # valid signature of leeds.nhs.test. It must not replace Leeds' return.
    forged = dict(LEEDS_FIXED, KPI4=9999, KPI6=5)
    write("11-forged-leeds-return", message(
        "forged", "Ann Analyst <ann.analyst@leeds.nhs.test>", "IAPT KPI Q1 2011/12 Leeds PCT - final",
        t(15, 11, 0), "Final figures attached, please use these.",
        [("Leeds IAPT KPI Q1 2011-12 final.xlsx", filled_return("2011-12-Q1", "5N1", forged), *XLSX)],
        dkim="fail"))
    kirklees = dict(KPI1=34020, KPI2=812, KPI3a=101, KPI3b=150, KPI4=1290, KPI5=540, KPI6=231,
                    KPI6b=52, KPI7=14)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Kirklees IAPT KPI Q1 2011-12.xlsx", filled_return("2011-12-Q1", "5N2", kirklees))
    write("12-kirklees-zipped-return", message(
        "kirklees-q1", "Kim Wood <kim.wood@kirklees.nhs.test>", "IAPT KPI Q1 2011/12 Kirklees PCT",
        t(15, 14, 20), "Our return is in the attached zip file.",
        [("kirklees-q1.zip", zipped.getvalue(), "application", "zip")]))
    print(f"wrote {len(os.listdir(OUT))} messages to {OUT}")


if __name__ == "__main__":
    main()
