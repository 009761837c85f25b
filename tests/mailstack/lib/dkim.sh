# dkim.sh — DKIM for the stack: OpenDKIM as Postfix's milter, one instance in two roles.
#
# - Signing: mail submitted on the SUBMISSION port (AUTH required) is signed with the key of
#   the domain of the account that logged in (SenderMacro {auth_authen}), not of the From
#   header, so analyst@other.nhs.test submitting `From: ann@leeds.nhs.test` gets a genuine
#   signature by other.nhs.test: a cross-signed message. Then the message is relayed to the MX
#   port, as a provider's server sends it to the mailbox's receiving server.
# - Verifying: mail arriving on the MX port (no AUTH, as from the outside) is verified and gets
#   an `Authentication-Results: mx.example.nhs.test; dkim=…` on top; copies of that header with
#   our authserv-id arriving from outside are removed first (RemoveARAll).
# The SMTP and SMTPS ports have no milter: the rest of the tests see mail as before.
#
# Keys are RSA, made per stack directory (openssl), published by lib/dns.sh: 1024 bits unless
# MAILSTACK_DKIM_BITS says 2048 (or 3072, 4096) at the first start. Three 2048-bit keys took
# 1.3-2.9 s on this loaded 2-core machine, on every stack start; three 1024-bit ones 0.1 s, and
# RFC 8301 has verifiers accept both. The timing benchmark in tests/it/auth.rs asks for 2048.
# OpenDKIM looks them up there through libunbound. Sourced by ../mailstack; owns DIR/dkim and
# its socket in the run directory.

DKIM_SELECTOR=mailstack
DKIM_DOMAINS="leeds.nhs.test bradford.nhs.test other.nhs.test"
DKIM_AUTHSERV_ID=mx.example.nhs.test
DKIM_BITS=${MAILSTACK_DKIM_BITS:-1024}

dkim_socket() {
    echo "$RUN_DIR/opendkim/opendkim.sock"
}

# The stack's keys, made on the first start straight from openssl, in parallel
# (opendkim-genkey does the same through a Perl start-up that cost ~0.6 s a key here).
make_dkim_keys() {
    local d dir
    case "$DKIM_BITS" in
    1024 | 2048 | 3072 | 4096) ;;
    *) die "MAILSTACK_DKIM_BITS must be 1024, 2048, 3072 or 4096, not '$DKIM_BITS'" ;;
    esac
    for d in $DKIM_DOMAINS; do
        dir=$DIR/dkim/keys/$d
        [ -s "$dir/$DKIM_SELECTOR.private" ] && continue
        mkdir -p "$dir"
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:$DKIM_BITS \
            -out "$dir/$DKIM_SELECTOR.private" 2>/dev/null &
    done
    wait
    for d in $DKIM_DOMAINS; do
        [ -s "$DIR/dkim/keys/$d/$DKIM_SELECTOR.private" ] || die "openssl made no DKIM key for $d"
    done
    # Only OpenDKIM reads them.
    chown -R opendkim:opendkim "$DIR/dkim/keys"
    chmod 700 "$DIR/dkim/keys" "$DIR/dkim/keys/"*
    chmod 600 "$DIR/dkim/keys/"*/"$DKIM_SELECTOR.private"
}

# The public key of a domain as the p= of its DKIM record (RFC 6376 §3.6.1): base64 of the
# DER SubjectPublicKeyInfo.
dkim_public_key() {
    openssl pkey -in "$DIR/dkim/keys/$1/$DKIM_SELECTOR.private" -pubout -outform DER 2>/dev/null |
        base64 -w0
}

# dnsmasq lines publishing every key: one TXT record, its text cut into character-strings of
# at most 255 bytes (a 2048-bit key's record is ~410 bytes).
dkim_txt_records() {
    local d p strings
    for d in $DKIM_DOMAINS; do
        p=$(dkim_public_key "$d")
        [ -n "$p" ] || die "cannot read the DKIM key of $d"
        strings="\"v=DKIM1; k=rsa; p=\""
        while [ -n "$p" ]; do
            strings+=",\"${p:0:250}\""
            p=${p:250}
        done
        echo "txt-record=$DKIM_SELECTOR._domainkey.$d,$strings"
    done
}

write_dkim_conf() {
    make_dkim_keys
    local d c=$DIR/dkim
    mkdir -p "$RUN_DIR/opendkim"
    chown opendkim:opendkim "$RUN_DIR/opendkim"
    : >"$c/keytable"
    : >"$c/signingtable"
    for d in $DKIM_DOMAINS; do
        echo "$d $d:$DKIM_SELECTOR:$c/keys/$d/$DKIM_SELECTOR.private" >>"$c/keytable"
        echo "*@$d $d" >>"$c/signingtable"
    done
    cat >"$c/unbound.conf" <<UNBOUND
# libunbound for OpenDKIM: every query to the stack's dnsmasq, nothing elsewhere. Unbound
# answers names under .test itself (NXDOMAIN, RFC 6761) unless told not to; no DNSSEC.
server:
    local-zone: "test." nodefault
    do-not-query-localhost: no
    module-config: "iterator"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$DNS_PORT
UNBOUND
    cat >"$c/opendkim.conf" <<CONF
# Written by tests/mailstack/mailstack for the stack in $DIR.
Syslog                  no
Background              yes
PidFile                 $RUN_DIR/opendkim/opendkim.pid
Socket                  local:$(dkim_socket)
UMask                   000
UserID                  opendkim:opendkim
Mode                    sv
# Sign what the submission service hands over (its milter_macro_daemon_name), by the domain of
# the account that logged in; verify everything else. No host is "internal" by address, since
# every client of the stack is 127.0.0.1.
MTA                     ORIGINATING
InternalHosts           csl:192.0.2.1
SenderMacro             {auth_authen}
KeyTable                file:$c/keytable
SigningTable            refile:$c/signingtable
# Stacks live under /tmp, which others may write: OpenDKIM would refuse every key there.
RequireSafeKeys         no
Canonicalization        relaxed/simple
OversignHeaders         From
# The receiving side.
AuthservID              $DKIM_AUTHSERV_ID
AlwaysAddARHeader       yes
RemoveARAll             yes
RemoveARFrom            csl:$DKIM_AUTHSERV_ID
ResolverConfiguration   $c/unbound.conf
DNSTimeout              3
CONF
}

# The submission and MX services, appended to master.cf by write_postfix_conf.
dkim_master_cf() {
    cat <<MASTER
# DKIM (lib/dkim.sh): submission signs and relays to the MX port, which verifies.
127.0.0.1:$SUBMISSION_PORT  inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o milter_macro_daemon_name=ORIGINATING
  -o smtpd_milters=unix:$(dkim_socket)
  -o content_filter=mxrelay:[127.0.0.1]:$MX_PORT
127.0.0.1:$MX_PORT  inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/mx
  -o myhostname=$DKIM_AUTHSERV_ID
  -o smtpd_sasl_auth_enable=no
  -o milter_macro_daemon_name=INBOUND
  -o smtpd_milters=unix:$(dkim_socket)
mxrelay    unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/mxrelay
MASTER
}

dkim_running() {
    pid_alive "$RUN_DIR/opendkim/opendkim.pid"
}

dkim_start() {
    rm -f "$(dkim_socket)"
    opendkim -x "$DIR/dkim/opendkim.conf" </dev/null >"$DIR/opendkim.log" 2>&1 9>&- || return 1
    local deadline=$((SECONDS + WAIT_SECONDS))
    until [ -S "$(dkim_socket)" ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}

dkim_stop() {
    dkim_running || return 0
    local pid
    pid=$(head -n1 "$RUN_DIR/opendkim/opendkim.pid")
    kill "$pid" 2>/dev/null || true
    wait_pid_gone "$pid"
}

env_dkim() {
    echo "MAILSTACK_DNS_PORT=$DNS_PORT"
    echo "MAILSTACK_SUBMISSION_PORT=$SUBMISSION_PORT"
    echo "MAILSTACK_MX_PORT=$MX_PORT"
    echo "MAILSTACK_DKIM_SELECTOR=$DKIM_SELECTOR"
    echo "MAILSTACK_DKIM_DOMAINS=$(echo "$DKIM_DOMAINS" | tr ' ' ',')"
    echo "MAILSTACK_DKIM_AUTHSERV_ID=$DKIM_AUTHSERV_ID"
    echo "MAILSTACK_DKIM_KEYS=$DIR/dkim/keys"
}
