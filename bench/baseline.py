#!/usr/bin/env python3
"""The baseline: the simple sequential script people write instead of running iapt-intake.

Run from cron, it logs in, and for each message in the inbox, one at a time: fetches it
(imaplib), reads it with `email`, opens the spreadsheet attachment with openpyxl, applies the
main checks roughly (organisation code known and the sender one of its submitters, required
figures present, whole numbers, KPI6 <= KPI5 - KPI6b), replies with smtplib (acceptance or a
numbered list of errors) and moves the message to Processed. It keeps no store: a fair baseline
for the work, generous to the script (one SMTP connection reused, no fsync).

Usage: BENCH_STACK_ENV=FILE baseline.py REGISTRY.csv
"""

import csv
import email
import email.policy
import email.utils
import io
import os
import re
import sys
from email.message import EmailMessage

import openpyxl

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchkit as bk  # noqa: E402  (connection settings only; the work below is the script's)

FROM = "iapt.returns@example.nhs.test"
REQUIRED = ["KPI1", "KPI2", "KPI3a", "KPI3b", "KPI4", "KPI5", "KPI6", "KPI6b"]
OPTIONAL = ["KPI7"]


def load_registry(path):
    orgs = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            orgs[row["code"]] = [s.lower() for s in row["submitters"].split(";")]
    return orgs


def read_return(data):
    """Header fields and KPI values from the first sheet of the workbook."""
    wb = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    ws = wb.worksheets[0]
    header, values, value_col = {}, {}, None
    for row in ws.iter_rows(values_only=True):
        label = str(row[0]).strip() if row and row[0] is not None else ""
        if value_col is None:
            if label.upper() == "KPI":
                cells = [str(c).strip().lower() if c is not None else "" for c in row]
                value_col = cells.index("value") if "value" in cells else 2
            elif label and len(row) > 1:
                header[label.lower()] = row[1]
        elif label:
            kpi = re.sub(r"\s+", "", label).upper()
            values[kpi] = row[value_col] if len(row) > value_col else None
    return header, values


def check(header, values, org_code, orgs, sender):
    errors = []
    code = str(header.get("organisation code") or "").strip()
    if code not in orgs:
        errors.append(f"Organisation code '{code}' is not known.")
    elif code != org_code:
        errors.append(f"Organisation code {code} is not the organisation the subject names.")
    elif sender.lower() not in orgs[code]:
        errors.append(f"{sender} is not registered to submit for {code}.")
    numbers = {}
    for kpi in REQUIRED + OPTIONAL:
        v = values.get(kpi.upper())
        if v is None or (isinstance(v, str) and not v.strip()):
            if kpi in REQUIRED:
                errors.append(f"{kpi} is blank.")
            continue
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v.strip())
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
            errors.append(f"{kpi} must be a whole number, not '{v}'.")
            continue
        numbers[kpi] = int(v)
    if all(k in numbers for k in ("KPI5", "KPI6", "KPI6b")):
        if numbers["KPI6"] > numbers["KPI5"] - numbers["KPI6b"]:
            errors.append("KPI6 must not exceed KPI5 minus KPI6b.")
    return errors


def answer(msg, errors, receipt):
    reply = EmailMessage()
    reply["From"] = FROM
    reply["To"] = msg["From"]
    reply["In-Reply-To"] = msg["Message-ID"]
    reply["References"] = msg["Message-ID"]
    reply["Auto-Submitted"] = "auto-replied"
    if errors:
        reply["Subject"] = f"Re: {msg['Subject']} - rejected"
        lines = [f"{n}. {e}" for n, e in enumerate(errors, 1)]
        reply.set_content("Your return was not accepted:\n\n" + "\n".join(lines) + "\n")
    else:
        reply["Subject"] = f"Re: {msg['Subject']} - accepted, receipt {receipt}"
        reply.set_content(f"Your return was accepted. Receipt {receipt}.\n")
    return reply


def main():
    orgs = load_registry(sys.argv[1])
    env = bk.stack_env()
    imap = bk.intake_login(env)
    smtp = bk.smtp_connect(env)
    imap.select("INBOX")
    handled = 0
    for uid in bk.uids(imap):
        typ, data = imap.uid("FETCH", uid, "(RFC822)")
        msg = email.message_from_bytes(data[0][1], policy=email.policy.default)
        sender = email.utils.parseaddr(msg["From"])[1]
        m = re.search(r"\(([A-Z0-9]{3})\)", str(msg["Subject"]))
        org_code = m.group(1) if m else ""
        errors = []
        attachments = [p for p in msg.iter_attachments() if str(p.get_filename()).endswith(".xlsx")]
        if not attachments:
            errors.append("No spreadsheet was attached.")
        for part in attachments:
            try:
                header, values = read_return(part.get_content())
                errors += check(header, values, org_code, orgs, sender)
            except Exception as e:  # the script's whole error handling: tell the sender
                errors.append(f"The file could not be read ({e}).")
        handled += 1
        smtp.send_message(answer(msg, errors, f"{org_code}-{handled}"), FROM, [sender])
        imap.uid("MOVE", uid, bk.PROCESSED_FOLDER)
    smtp.quit()
    imap.logout()
    print(f"baseline: {handled} messages handled")


if __name__ == "__main__":
    main()
