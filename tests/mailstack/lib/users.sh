# users.sh — the stack's test mailboxes: one table, written out as Dovecot's passwd-file,
# Postfix's list of valid recipients, one password file per user, and the env lines.
# Sourced by ../mailstack; owns nothing outside DIR.

# KEY address password — KEY names the env variables (MAILSTACK_<KEY>_USER ...).
USERS_TABLE="
INTAKE       intake@example.nhs.test      intake-pw
DCT          dct@example.nhs.test         dct-pw
CONTENT      content@example.nhs.test     content-pw
POSTMASTER   postmaster@example.nhs.test  postmaster-pw
LEEDS        analyst@leeds.nhs.test       leeds-pw
BRADFORD     analyst@bradford.nhs.test    bradford-pw
UNREGISTERED someone@unregistered.test    unregistered-pw
OTHER        analyst@other.nhs.test       other-pw
"
# Load tests: p001@load.nhs.test ... p200@load.nhs.test, one password for all.
LOAD_COUNT=200
LOAD_DOMAIN=load.nhs.test
LOAD_PASSWORD=load-pw

# The domains Postfix accepts mail for; everything else is refused (nothing leaves the host).
MAIL_DOMAINS="example.nhs.test leeds.nhs.test bradford.nhs.test other.nhs.test unregistered.test $LOAD_DOMAIN"

each_user() {
    local key addr pw i
    while read -r key addr pw; do
        if [ -n "$key" ]; then echo "$key $addr $pw"; fi
    done <<<"$USERS_TABLE"
    for i in $(seq 1 "$LOAD_COUNT"); do
        printf 'LOAD%03d p%03d@%s %s\n' "$i" "$i" "$LOAD_DOMAIN" "$LOAD_PASSWORD"
    done
}

write_users() {
    local key addr pw
    : >"$DIR/dovecot/users"
    : >"$POSTFIX_CONF/vmailbox"
    while read -r key addr pw; do
        echo "$addr:{PLAIN}$pw::::::" >>"$DIR/dovecot/users"
        echo "$addr OK" >>"$POSTFIX_CONF/vmailbox"
        case "$key" in
        LOAD*) ;;
        *) printf '%s' "$pw" >"$DIR/secrets/$(echo "$key" | tr 'A-Z' 'a-z').password" ;;
        esac
    done < <(each_user)
    # Read by Dovecot's auth process, which runs as the dovecot user.
    chown root:dovecot "$DIR/dovecot/users"
    chmod 640 "$DIR/dovecot/users"
    chmod 600 "$DIR/secrets/"*.password
}

env_users() {
    local key addr pw lower
    while read -r key addr pw; do
        [ -n "$key" ] || continue
        lower=$(echo "$key" | tr 'A-Z' 'a-z')
        echo "MAILSTACK_${key}_USER=$addr"
        echo "MAILSTACK_${key}_PASSWORD=$pw"
        echo "MAILSTACK_${key}_PASSWORD_FILE=$DIR/secrets/$lower.password"
    done <<<"$USERS_TABLE"
    echo "MAILSTACK_LOAD_USERS=p001@$LOAD_DOMAIN..p$(printf '%03d' "$LOAD_COUNT")@$LOAD_DOMAIN"
    echo "MAILSTACK_LOAD_COUNT=$LOAD_COUNT"
    echo "MAILSTACK_LOAD_DOMAIN=$LOAD_DOMAIN"
    echo "MAILSTACK_LOAD_PASSWORD=$LOAD_PASSWORD"
}
