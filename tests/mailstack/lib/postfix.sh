# postfix.sh — the stack's Postfix: SMTP (STARTTLS offered) and SMTPS on loopback, delivering
# the test domains to Dovecot by LMTP and refusing everything else; SMTP AUTH through Dovecot.
# Sourced by ../mailstack; owns DIR/postfix, DIR/run/postfix-queue, DIR/postfix-data and its own
# entry in /etc/postfix/main.cf's alternate_config_directories.

write_postfix_conf() {
    local domains
    domains=$(echo "$MAIL_DOMAINS" | tr ' ' ',')
    cat >"$POSTFIX_CONF/main.cf" <<EOF
# Written by tests/mailstack/mailstack for the stack in $DIR; regenerated on a fresh start.
compatibility_level = 3.6
queue_directory = $POSTFIX_QUEUE
data_directory = $DIR/postfix-data
mail_owner = postfix
setgid_group = postdrop
# Without a syslog daemon Postfix would log nowhere and exit silently on errors.
maillog_file = $DIR/postfix.log
maillog_file_prefixes = $DIR

myhostname = mailstack.example.nhs.test
mydomain = example.nhs.test
myorigin = example.nhs.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
readme_directory = no
smtpd_banner = \$myhostname ESMTP iapt-intake mailstack

# No DNS and no way out: only the test domains are delivered, anything else bounces at once.
relayhost =
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no
default_transport = error:5.7.1 the test mail stack delivers only its own test domains
relay_transport = error:5.7.1 the test mail stack delivers only its own test domains
virtual_mailbox_domains = $domains
virtual_mailbox_maps = texthash:$POSTFIX_CONF/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination

# Tests stop Dovecot on purpose: retry deferred mail within seconds, not minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
# A burst of test submissions is accepted at full speed.
in_flow_delay = 0
message_size_limit = 52428800

smtpd_tls_cert_file = $DIR/tls/cert.pem
smtpd_tls_key_file = $DIR/tls/key.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $RUN_DIR/dovecot/auth-postfix
EOF
    cat >"$POSTFIX_CONF/master.cf" <<EOF
# Written by tests/mailstack/mailstack. No service is chrooted: every path lives in $DIR.
# service            type  private unpriv chroot wakeup maxproc command
127.0.0.1:$SMTP_PORT  inet  n       -       n       -       -       smtpd
127.0.0.1:$SMTPS_PORT  inet  n       -       n       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
EOF
    dkim_master_cf >>"$POSTFIX_CONF/master.cf"
    backdate "$POSTFIX_CONF/main.cf" "$POSTFIX_CONF/master.cf" "$POSTFIX_CONF/vmailbox"
    # A sendmail for this stack, for code that runs a sendmail command with no extra arguments
    # (lettre's sendmail transport): Postfix's sendmail with -C pointing here.
    mkdir -p "$DIR/bin"
    printf '#!/bin/sh\nexec /usr/sbin/sendmail -C %s "$@"\n' "$POSTFIX_CONF" >"$DIR/bin/sendmail"
    chmod 755 "$DIR/bin/sendmail"
}

# `postfix -c DIR` (and sendmail -C, postqueue -c) accept a config directory only when the
# default main.cf lists it in alternate_config_directories. Entries whose stack is gone are
# pruned, so the list does not grow with every test run. The caller holds $LOCK.
postfix_register() {
    edit_alternates add
}

postfix_unregister() {
    edit_alternates remove
}

edit_alternates() {
    local mode=$1 current d kept=()
    mkdir -p /etc/postfix
    [ -e /etc/postfix/main.cf ] || echo "compatibility_level = 3.6" >/etc/postfix/main.cf
    current=$(postconf -c /etc/postfix -h alternate_config_directories 2>/dev/null | tr ', ' '\n\n')
    for d in $current; do
        [ "$d" = "$POSTFIX_CONF" ] && continue
        [ -e "$d/main.cf" ] && kept+=("$d")
    done
    [ "$mode" = add ] && kept+=("$POSTFIX_CONF")
    local wanted="${kept[*]}"
    [ "$wanted" = "$(echo $current)" ] && return 0
    postconf -c /etc/postfix -e "alternate_config_directories = $wanted"
    backdate /etc/postfix/main.cf
    # Unlisted, `postfix -c` exits 1 without a word (it can only complain to syslog).
    local listed
    listed=" $(postconf -c /etc/postfix -h alternate_config_directories | tr ',' ' ') "
    if [ "$mode" = add ] && [[ "$listed" != *" $POSTFIX_CONF "* ]]; then
        die "could not list $POSTFIX_CONF in /etc/postfix/main.cf alternate_config_directories"
    fi
}

# Postfix will not read a table or main.cf changed in the last second or two: it sleeps in
# 0.3 s steps until the file is old enough ("table has changed"), which made every start take
# 2-4 s. The files are complete when written, so they are dated a minute back.
backdate() {
    touch -d '1 minute ago' "$@"
}

postfix_pidfile() {
    echo "$POSTFIX_QUEUE/pid/master.pid"
}

postfix_running() {
    pid_alive "$(postfix_pidfile)"
}

postfix_start() {
    # postfix-script checks and creates the queue directories, then the master daemonises.
    if ! postfix -c "$POSTFIX_CONF" start </dev/null >"$DIR/postfix.start.log" 2>&1 9>&-; then
        return 1
    fi
}

postfix_stop() {
    postfix_running || return 0
    local pid
    pid=$(tr -d ' ' <"$(postfix_pidfile)")
    postfix -c "$POSTFIX_CONF" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    wait_pid_gone "$pid"
}
