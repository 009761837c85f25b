# dovecot.sh — the stack's Dovecot: IMAP (STARTTLS), IMAPS, LMTP, and the SASL socket Postfix
# uses for SMTP AUTH. Sourced by ../mailstack; owns DIR/dovecot, DIR/mail and the run dir.
#
# The master runs as root (it must bind and switch users) and drops privileges everywhere else:
# imap-login runs as dovenull (it refuses root), auth as dovecot, imap and lmtp as the mail user
# (never uid 0: Dovecot refuses a userdb uid below first_valid_uid).

write_dovecot_conf() {
    local mail_uid mail_gid mechs passdbs dh
    mail_uid=$(id -u mail)
    mail_gid=$(id -g mail)
    dh=/usr/share/dovecot/dh.pem
    if [ ! -s "$dh" ]; then
        dh=$DIR/tls/dh.pem
        openssl dhparam -dsaparam -out "$dh" 2048 2>/dev/null
    fi
    mechs="plain login"
    passdbs="passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%Lu $DIR/dovecot/users
}"
    if [ -n "$OAUTH2_URL" ]; then
        mechs="$mechs xoauth2 oauthbearer"
        passdbs="$passdbs
# XOAUTH2 / OAUTHBEARER: the bearer token is checked against the introspection URL.
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DIR/dovecot/oauth2.conf.ext
}"
    fi
    cat >"$DOVECOT_CONF" <<EOF
# Written by tests/mailstack/mailstack for the stack in $DIR; regenerated on a fresh start.
instance_name = mailstack-$(printf '%s' "$DIR" | sha256sum | cut -c1-12)
base_dir = $RUN_DIR/dovecot
state_dir = $DIR/dovecot/state
log_path = $DIR/dovecot.log
info_log_path = $DIR/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp

default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = $mail_uid
last_valid_uid = $mail_uid
first_valid_gid = $mail_gid
last_valid_gid = $mail_gid

ssl = yes
ssl_cert = <$DIR/tls/cert.pem
ssl_key = <$DIR/tls/key.pem
ssl_dh = <$dh
ssl_min_protocol = TLSv1.2
# Tests may also speak plain IMAP (tls = "none"); production servers would say yes here.
disable_plaintext_auth = no

auth_mechanisms = $mechs
auth_username_format = %Lu
auth_verbose = yes
# No cache: a test that revokes a token or password sees the effect at once.
auth_cache_size = 0
# Tests try wrong passwords and expired tokens on purpose; do not make them wait 2 s each.
auth_failure_delay = 0
$passdbs
# The same file as the passdb, so LMTP says "unknown user" for anyone not in it (a static userdb
# would need a passdb lookup, which the mechanisms filters above skip). Every user gets the mail
# uid/gid: never uid 0, and within first_valid_uid..last_valid_uid.
userdb {
  driver = passwd-file
  args = username_format=%Lu $DIR/dovecot/users
  override_fields = uid=$mail_uid gid=$mail_gid home=$DIR/mail/%Ld/%Ln
}

mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  # The separator Exchange / Microsoft 365 shows too.
  separator = /
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
service auth {
  # Postfix's smtpd asks Dovecot to check SMTP AUTH (smtpd_sasl_type = dovecot).
  unix_listener auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# No auth penalty: tests fail logins on purpose from 127.0.0.1, and Dovecot would then delay
# every following login from that address by up to 15 s (auth_failure_delay is not enough).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol imap {
  # A daemon, a bench and a test may all hold connections to one mailbox at once.
  mail_max_userip_connections = 200
}
protocol lmtp {
  postmaster_address = postmaster@example.nhs.test
}
EOF
    mkdir -p "$DIR/dovecot/state"
}

dovecot_running() {
    pid_alive "$RUN_DIR/dovecot/master.pid"
}

dovecot_start() {
    # Dovecot daemonises once its listeners are bound; its stdio goes to a log, never to the
    # caller's pipes (a test reading our output would otherwise wait for EOF forever), and it
    # must not inherit fd 9, the start lock, or the next start would wait for it forever.
    if ! dovecot -c "$DOVECOT_CONF" </dev/null >"$DIR/dovecot.start.log" 2>&1 9>&-; then
        return 1
    fi
}

dovecot_stop() {
    dovecot_running || return 0
    local pid
    pid=$(head -n1 "$RUN_DIR/dovecot/master.pid")
    # SIGTERM is what `dovecot stop` sends, but that then polls for ~3 s before returning.
    kill "$pid" 2>/dev/null || true
    wait_pid_gone "$pid"
}

wait_pid_gone() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    while proc_alive "$1"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}
