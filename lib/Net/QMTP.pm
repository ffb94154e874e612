package Net::QMTP;

use 5.008001;
use strict;
use warnings;

use Carp qw(carp croak);
use Scalar::Util ();

our $VERSION = '1.00';

require XSLoader;
XSLoader::load('Net::QMTP', $VERSION);

# The C client cannot be shared between interpreters: a new thread gets no
# copy (its clone of the object is undef), so nothing is closed twice.
sub CLONE_SKIP { 1 }

my %PREFIX = (K => 'success: ', Z => 'deferral: ', D => 'failure: ');

# Statuses and modes from c_src/qmtp.h, as the core defines them.
my %CORE = _constants();

# A package that was not written in full was not delivered (a server
# discards it), so these are safe to send again on a new connection;
# except after a timeout (see send_many).
my $NOT_BEGUN = $CORE{E_NOTSENT};
my $TIMED_OUT = $CORE{E_TIMEOUT};
my %RESEND = map { $_ => 1 } @CORE{qw(E_IO E_EOF E_NOTSENT)};
my %ENCODING = (unix => "\012", dos => "\015");
my %ANSWERS = (
    auto      => $CORE{ANSWERS_AUTO},
    recipient => $CORE{ANSWERS_RECIPIENT},
    package   => $CORE{ANSWERS_PACKAGE},
);

my %OPTION = map { $_ => 1 } qw(
    Port ConnectTimeout Timeout DeferConnect Debug SessionLimit HalfCloseAfter MaxResponse LocalAddr
    BusyWait Answers TotalTimeout
    SSL SSL_ca_file SSL_ca_path SSL_verify_mode SSL_hostname SSL_fingerprint SSL_cert_file SSL_key_file
    SSL_passwd_cb SSL_min_version
);
my %TLS_VERSION = ('TLSv1_2' => 0x0303, 'TLSv1.2' => 0x0303, 'TLSv1_3' => 0x0304, 'TLSv1.3' => 0x0304);

# QMTPS, TLS from the first byte (s/qmail's port 6209), where this build
# has it (OpenSSL found when it was built).
sub can_tls { return _can_tls() ? 1 : 0 }
sub can_ssl { return _can_tls() ? 1 : 0 } # Net::SMTP's name for it

sub new {
    my $proto = shift;
    my $class = ref($proto) || $proto
        or croak 'Net::QMTP::new is a class method: Net::QMTP->new(HOST, %options)';
    my $server = shift or croak 'No server specified in constructor';
    _check_servers($server);
    croak 'Net::QMTP->new: options must be NAME => VALUE pairs' if @_ % 2;
    my %args = @_;
    for my $name (sort keys %args) {
        carp "Net::QMTP->new: unknown option '$name' ignored" unless $OPTION{$name};
    }
    my $self = bless {
        SENDER       => undef,
        RECIPIENTS   => [],
        MESSAGE      => undef,
        MSGFILE      => undef,
        ENCODING     => (defined $/ && $/ eq "\015\012" ? "\015" : "\012"), # local $/ makes it undef
        SOCKET       => undef, # see Net::QMTP::Socket
        SERVER       => $server,
        PORT         => 209,
        DEBUG        => ($args{Debug} ? 1 : undef),
        TIMEOUT      => undef,
        CONNECTTIME  => undef,
        SESSIONLIMIT => 3600,
        QMTP_IO_TIMEOUT => 120,
        QMTP_TOTAL      => undef,
        QMTP_HALFCLOSE  => 0.5,
        QMTP_MAXRESP    => 65536,
        QMTP_BUSYWAIT   => 0.00005,
        QMTP_ANSWERS    => 'auto',
        QMTP_LOCALADDR  => undef,
        QMTP_ERROR      => undef,
        QMTP_RESPONSES  => [],
        QMTP_WANTED     => 0,
    }, $class;
    _attach($self);

    $self->{PORT} = _check_port($args{Port}, 'Port') if defined $args{Port};
    $self->{TIMEOUT} = _seconds('ConnectTimeout', $args{ConnectTimeout}) if $args{ConnectTimeout};
    $self->{QMTP_IO_TIMEOUT} = _seconds('Timeout', $args{Timeout}) if defined $args{Timeout};
    $self->{QMTP_TOTAL} = _seconds('TotalTimeout', $args{TotalTimeout}) if defined $args{TotalTimeout};
    $self->{SESSIONLIMIT} = _seconds('SessionLimit', $args{SessionLimit}) if defined $args{SessionLimit};
    $self->{QMTP_HALFCLOSE} = _seconds('HalfCloseAfter', $args{HalfCloseAfter})
        if defined $args{HalfCloseAfter};
    if (defined $args{MaxResponse}) {
        $args{MaxResponse} =~ /\A[1-9][0-9]{0,8}\z/
            or croak "MaxResponse must be a whole number of bytes from 1 to 999999999, not '$args{MaxResponse}'";
        $self->{QMTP_MAXRESP} = $args{MaxResponse};
    }
    if (defined $args{BusyWait}) {
        my $v = $args{BusyWait};
        _is_seconds($v) && $v <= 0.01
            or croak "BusyWait must be a number of seconds from 0 to 0.01, not '$v'";
        $self->{QMTP_BUSYWAIT} = $v + 0;
    }
    if (defined $args{Answers}) {
        my $v = $args{Answers};
        !ref $v && exists $ANSWERS{$v}
            or croak "Answers must be 'auto', 'recipient' or 'package', not '" . _printable("$v") . "'";
        $self->{QMTP_ANSWERS} = $v;
    }
    if (defined $args{LocalAddr}) {
        my $v = $args{LocalAddr};
        index($v, "\0") < 0
            or croak "LocalAddr '" . _printable($v) . "' contains a NUL byte";
        length $v && $v !~ /\s/
            or croak "LocalAddr must be a host name or address, not '$v'";
        $self->{QMTP_LOCALADDR} = $v;
        _local_addr($self, $v);
    }
    $self->_configure_tls(\%args);
    $self->_configure_core;
    $self->_debug("Net::QMTP $VERSION, server " . (ref $server ? join(', ', @$server) : $server)
        . ", answers $self->{QMTP_ANSWERS}");

    unless ($args{DeferConnect}) {
        unless ($self->reconnect) {
            $@ = $self->{QMTP_ERROR};
            return undef;
        }
    }
    return $self;
}

# A server is a host (name or address, optionally with a port), a Unix
# socket path, or a list of those to try in turn. Everything that can be
# checked without the network is checked here, at the caller's line: a
# NUL byte would cut the name short in C, and a port out of range would
# be wrapped into another one.
sub _check_servers {
    my ($server) = @_;
    my @list = ref $server eq 'ARRAY' ? @$server : ($server);
    croak 'No server specified in constructor' unless @list;
    for (@list) {
        croak 'Each server must be a non-empty string' unless defined && !ref && length;
        croak "Server '" . _printable($_) . "' contains a NUL byte" if index($_, "\0") >= 0;
        my (undef, $port) = _split_server($_);
        _check_port($port, "The port in server '$_'") if defined $port;
    }
}

sub _check_port {
    my ($port, $what) = @_;
    return $port if $port =~ /\A[0-9]+\z/ && $port >= 1 && $port <= 65535;
    return $port if $port =~ /\A[A-Za-z][A-Za-z0-9-]*\z/; # a service name, e.g. 'qmtp'
    croak "$what must be a number from 1 to 65535 or a service name, not '" . _printable($port) . "'";
}

# A plain non-negative number: 2, 0.5, .25, 1e-3 (no sign, no "inf").
sub _is_seconds {
    my ($value) = @_;
    return defined $value && $value =~ /\A\s*(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*\z/;
}

sub _seconds {
    my ($name, $value) = @_;
    return $value + 0 if _is_seconds($value) && $value > 0;
    croak "$name must be a positive number of seconds, not '" . (defined $value ? $value : 'undef') . "'";
}

# The TLS options, checked here at the caller's line; files are read by
# the core now, so that a missing one is named before any connection.
sub _configure_tls {
    my ($self, $args) = @_;
    my @given = grep { /\ASSL_/ && defined $args->{$_} } sort keys %$args;
    if (!$args->{SSL}) {
        croak "Net::QMTP->new: $given[0] needs SSL => 1" if @given;
        return;
    }
    _can_tls() or croak 'Net::QMTP->new: SSL => 1, but this Net::QMTP was built without TLS: '
        . 'install OpenSSL\'s headers (Debian: apt-get install libssl-dev) and build it again';
    $self->{PORT} = 6209 unless defined $args->{Port};
    my $verify = defined $args->{SSL_verify_mode} ? $args->{SSL_verify_mode} : 1;
    $verify =~ /\A[01]\z/
        or croak "SSL_verify_mode must be 1 (check the server's certificate, the default) or 0 (unsafe: none), not '"
        . _printable("$verify") . "'";
    my $pins;
    if (defined $args->{SSL_fingerprint}) {
        my @list = ref $args->{SSL_fingerprint} eq 'ARRAY' ? @{ $args->{SSL_fingerprint} } : ($args->{SSL_fingerprint});
        croak 'SSL_fingerprint needs at least one fingerprint' unless @list;
        for my $fp (@list) {
            my $hex = defined $fp && !ref $fp && $fp =~ /\A(?:sha256[\$:])?((?:[0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2})\z/ ? $1 : undef;
            defined $hex
                or croak "SSL_fingerprint must be the certificate's SHA-256 fingerprint, 'sha256\$' and 64 hex digits "
                . "(colons allowed), not '" . _printable(defined $fp ? "$fp" : 'undef') . "'";
            $hex =~ tr/://d;
            $pins .= pack 'H*', $hex;
        }
    }
    my $min = 0;
    if (defined $args->{SSL_min_version}) {
        $min = $TLS_VERSION{ $args->{SSL_min_version} }
            or croak "SSL_min_version must be 'TLSv1_2' or 'TLSv1_3', not '" . _printable("$args->{SSL_min_version}") . "'";
    }
    for my $name (qw(SSL_ca_file SSL_ca_path SSL_cert_file SSL_key_file SSL_hostname)) {
        my $v = $args->{$name};
        next unless defined $v;
        croak "$name must be a non-empty string" if ref $v || !length $v;
        croak "$name '" . _printable($v) . "' contains a NUL byte" if index($v, "\0") >= 0;
    }
    croak 'SSL_key_file needs SSL_cert_file' if defined $args->{SSL_key_file} && !defined $args->{SSL_cert_file};
    my $password = _key_password($args);
    $self->{QMTP_TLS} = 1;
    _tls($self, 1, $verify, @$args{qw(SSL_ca_file SSL_ca_path SSL_hostname)}, $pins,
        @$args{qw(SSL_cert_file SSL_key_file)}, $min, $password)
        or croak 'Net::QMTP->new: ' . (_error($self))[1];
    return;
}

# An encrypted key's password, from the caller's SSL_passwd_cb, asked
# once, here: the core never prompts (OpenSSL's own prompt would wait on
# the terminal for ever).
sub _key_password {
    my ($args) = @_;
    my $cb = $args->{SSL_passwd_cb};
    return undef unless defined $cb;
    croak 'SSL_passwd_cb must be a code reference returning the password of the client key'
        unless ref $cb eq 'CODE';
    croak 'SSL_passwd_cb needs SSL_cert_file' unless defined $args->{SSL_cert_file};
    my $password = $cb->();
    croak 'SSL_passwd_cb returned no password' unless defined $password;
    $password = "$password";
    utf8::downgrade($password, 1)
        or croak 'SSL_passwd_cb returned a password with wide characters: encode it to bytes first';
    croak 'SSL_passwd_cb returned a password containing a NUL byte' if index($password, "\0") >= 0;
    return $password;
}

# Without ConnectTimeout, Timeout bounds connecting too, as Net::SMTP's
# does (it hands Timeout to IO::Socket); both default to 120 s.
sub _configure_core {
    my $self = shift;
    _configure($self, $self->{TIMEOUT} || $self->{QMTP_IO_TIMEOUT} || 120, $self->{QMTP_IO_TIMEOUT},
        $self->{QMTP_HALFCLOSE}, $self->{QMTP_MAXRESP}, $self->{QMTP_BUSYWAIT},
        $ANSWERS{ $self->{QMTP_ANSWERS} });
}

# Under taint mode (-T), what core Perl's connect and open would refuse is
# refused here too, with their words: the C core cannot see taint. Under
# -t it is a warning, as in core Perl.
sub _insecure {
    my ($op, @values) = @_;
    return unless ${^TAINT};
    for (@values) {
        next unless defined && Scalar::Util::tainted($_);
        my $why = "Insecure dependency in $op while running with -T switch";
        croak $why if ${^TAINT} > 0;
        carp $why;
        return;
    }
}

# Byte strings only: a netstring's length counts bytes.
sub _bytes {
    my ($what, $value) = @_;
    return $value unless defined $value && utf8::is_utf8($value);
    utf8::downgrade($value, 1) or croak "Wide character in $what: encode it to bytes first (e.g. with Encode::encode_utf8)";
    return $value;
}

sub _fail {
    my ($self, $why) = @_;
    $self->{QMTP_ERROR} = $why;
    $self->_debug("error: $why");
    return undef;
}

sub _core_error {
    my $self = shift;
    my (undef, $text) = _error($self);
    return $self->_fail($text);
}

# Net::QMTP->send and the like: said at the caller's line, as 0.06's bare
# croak did, rather than dying at a hash dereference in here.
sub _not_object {
    my ($name) = @_;
    croak "Net::QMTP::$name is an object method: call it on an object from Net::QMTP->new";
}

sub error {
    my $self = shift;
    ref $self or _not_object('error');
    return $self->{QMTP_ERROR};
}

sub server {
    my $self = shift;
    ref $self or _not_object('server');
    if (@_) {
        _check_servers($_[0]);
        $self->{SERVER} = shift;
    }
    return $self->{SERVER};
}

sub sender {
    my $self = shift;
    ref $self or _not_object('sender');
    $self->{SENDER} = _bytes('sender', shift) if @_;
    return $self->{SENDER};
}

sub recipient {
    my $self = shift;
    ref $self or _not_object('recipient');
    if (@_) {
        my $rcpt = shift;
        croak 'Undefined recipient' unless defined $rcpt;
        push @{ $self->{RECIPIENTS} }, _bytes('recipient', $rcpt);
    }
    return $self->{RECIPIENTS};
}

sub message {
    my $self = shift;
    ref $self or _not_object('message');
    if ($self->{MSGFILE}) {
        carp 'Message already created by message_from_file()';
        return undef;
    }
    if (@_) {
        my $text = shift;
        _not_while_sending($self, 'message()');
        $text = '' unless defined $text;
        $text = _bytes('message', $text) if utf8::is_utf8($text);
        if (defined $self->{MESSAGE}) {
            $self->{MESSAGE} .= $text;
        } else {
            $self->{MESSAGE} = $text;
        }
    }
    return $self->{MESSAGE};
}

# send() writes the message from its own buffer, and the caller's signal
# handlers run while it waits: meanwhile the message is read-only (see
# hold_still in QMTP.xs), and a handler that tries to change it dies here.
sub _not_while_sending {
    my ($self, $what) = @_;
    croak "$what cannot change the message while send() is sending it"
        if Internals::SvREADONLY($self->{MESSAGE});
    return;
}

sub message_from_file {
    my $self = shift;
    ref $self or _not_object('message_from_file');
    if (defined $self->{MESSAGE}) {
        carp 'Message already created by message()';
        return undef;
    }
    my $file = shift or return $self->{MSGFILE};
    croak "message_from_file: file name '" . _printable($file) . "' contains a NUL byte"
        if index($file, "\0") >= 0;
    $self->{MSGFILE} = _bytes('file name', $file);
    return $self->{MSGFILE};
}

sub encoding {
    my $self = shift;
    ref $self or _not_object('encoding');
    my $name = shift or return $self->{ENCODING};
    croak "Unknown encoding: '$name'" unless exists $ENCODING{$name};
    return $self->{ENCODING} = $ENCODING{$name};
}

sub new_envelope {
    my $self = shift;
    ref $self or _not_object('new_envelope');
    $self->{SENDER} = undef;
    $self->{RECIPIENTS} = [];
    return 1;
}

sub new_message {
    my $self = shift;
    ref $self or _not_object('new_message');
    _not_while_sending($self, 'new_message()');
    $self->{MESSAGE} = undef;
    $self->{MSGFILE} = undef;
    return 1;
}

# Built on first use from the results the C client keeps until the next
# send: most callers never ask, and a hash per recipient would be the
# costliest part of a small send.
sub responses {
    my $self = shift;
    ref $self or _not_object('responses');
    return $self->{QMTP_RESPONSES} if $self->{QMTP_RESPONSES};
    my $flat = [ _results($self) ];
    my $rcpts = $self->{QMTP_SENT_TO};
    my @list;
    for (my $i = 0; $i < @$flat; $i += 4) {
        my ($code, $text, $received, $per_package) = @$flat[$i .. $i + 3];
        push @list, {
            recipient   => $rcpts->[$i / 4],
            code        => $code,
            text        => $text,
            response    => $PREFIX{$code} . $text,
            received    => $received,
            per_package => $per_package,
        };
    }
    return $self->{QMTP_RESPONSES} = \@list;
}

# HOST, or HOST:PORT, [V6]:PORT, [V6]; the port is undef when none is
# given. A Unix socket path and a bare IPv6 address have none.
sub _split_server {
    my ($server) = @_;
    return ($server, undef) if $server =~ m{\A/};  # a Unix socket path
    return ($1, $2) if $server =~ /\A\[([^\]]+)\](?::([^:]+))?\z/;
    return ($1, $2) if $server =~ /\A([^:]*):([^:]+)\z/;
    return ($server, undef); # a name, an IPv4 address or a bare IPv6 address
}

# Connecting is one of the calls TotalTimeout bounds: reconnect() starts
# the limit; the reconnects a send makes by itself (_reconnect) go on
# within the send's own.
sub reconnect {
    my $self = shift;
    ref $self or _not_object('reconnect');
    _not_during_async($self, 'reconnect');
    _close($self); # first: it dies in a handler during a send (see SIGNALS)
    _call_limit($self, $self->{QMTP_TOTAL} || 0);
    return $self->_reconnect;
}

sub _reconnect {
    my $self = shift;
    $self->_connect_begins;
    my @servers = $self->_servers;
    my @why;
    for my $server (@servers) {
        my ($host, $port) = $self->_server_address($server);
        last if _connect($self, $host, $port);
        push @why, (_error($self))[1];
    }
    return $self->_fail(join '; ', @why) if @why == @servers;
    return $self->_connected;
}

# What connecting (blocking, or without blocking in Net::QMTP::Async)
# does first, and once a server has accepted.
sub _connect_begins {
    my $self = shift;
    _close($self);
    $self->{QMTP_ERROR} = undef;
    $self->{QMTP_WANTED} = 0;
    $self->{QMTP_CLOSED_WHY} = undef;
    $self->{SOCKET} = undef;
    return;
}

sub _servers {
    my $self = shift;
    return ref $self->{SERVER} eq 'ARRAY' ? @{ $self->{SERVER} } : ($self->{SERVER});
}

# A server of the list as the host and port to connect to.
sub _server_address {
    my ($self, $server) = @_;
    my ($host, $port) = _split_server($server);
    # Taint is checked on what was given: the parts come from a pattern
    # match, which untaints.
    _insecure('connect', $server, (defined $port || $host =~ m{\A/} ? () : $self->{PORT}),
        $self->{QMTP_LOCALADDR});
    $port = $self->{PORT} unless defined $port;
    $self->_debug($host =~ m{\A/} ? "connecting to unix socket $host" : "connecting to $host port $port");
    return ($host, "$port");
}

sub _connected {
    my $self = shift;
    $self->{QMTP_WANTED} = 1;
    $self->{QMTP_USED} = 0;
    $self->{CONNECTTIME} = time;
    $self->{SOCKET} = Net::QMTP::Socket::_new($self);
    $self->_debug('connected to ' . _peer($self));
    return 1;
}

sub disconnect {
    my $self = shift;
    ref $self or _not_object('disconnect');
    _not_during_async($self, 'disconnect');
    my $was_open = _close($self);
    my $was_wanted = $self->{QMTP_WANTED};
    $self->{QMTP_WANTED} = 0;
    $self->{SOCKET} = undef;
    unless ($was_open || $was_wanted) {
        carp 'Socket is not defined';
        return $self->_fail('not connected');
    }
    $self->{QMTP_ERROR} = undef;
    $self->_debug('disconnected');
    return 1;
}

# For Email::Sender::Transport::QMTP: the next send or send_many opens the
# connection itself, within its own TotalTimeout, if it is not open.
sub _want_connection { $_[0]{QMTP_WANTED} = 1; return }

# A package must start on a connection that is open, not past the session
# limit, and not closed by the server while it sat idle; anything else is
# reopened first (the caller asked for a connection and has not dropped it).
sub _ready_connection {
    my $self = shift;
    $self->{QMTP_WANTED} or return $self->_fail('not connected: call reconnect() first');
    my $why = _not_ready($self, $self->{SESSIONLIMIT});
    return 1 unless defined $why;
    $why .= " ($self->{QMTP_CLOSED_WHY})" if $self->{DEBUG} && defined $self->{QMTP_CLOSED_WHY}
        && $why =~ /closed\z/;
    return $self->_auto_reconnect($why);
}

# A reconnect the caller did not ask for. If it fails, the caller still
# wants a connection: the next call tries again, rather than leaving a
# long-running sender stuck after one outage.
sub _auto_reconnect {
    my ($self, $why) = @_;
    $self->_debug("reconnecting: $why");
    return 1 if $self->_reconnect;
    $self->{QMTP_WANTED} = 1;
    return undef;
}

sub send {
    my $self = shift;
    _not_during_async($self, 'send') if ref $self && $self->{QMTP_ASYNC};
    # The usual case (message in memory, no Debug, connection ready) is
    # checked and sent by one XS call, which does nothing and returns
    # nothing when any of that is not so; then the long way below. Either
    # way it starts this call's TotalTimeout, and when it sends it keeps
    # what send() keeps below (error, recipients as sent, responses).
    ref $self or _not_object('send');
    my $saved = $@; # send() leaves the caller's $@ alone
    my ($status, $by_rcpt, $reused);
    eval { ($status, $by_rcpt, $reused) = _send_usual($self); 1 } or _rethrow($@);
    $@ = $saved;
    return $by_rcpt if defined $status && $status == 0;
    my $file = $self->{MSGFILE} ? $self->{MSGFILE} : undef;
    if (!defined $status) {
        $self->{QMTP_ERROR} = undef;
        defined $self->{SENDER} or return $self->_not_sent('no sender: call sender() first');
        @{ $self->{RECIPIENTS} } or return $self->_not_sent('no recipient: call recipient() first');
        defined $self->{MESSAGE} || $file
            or return $self->_not_sent('no message: call message() or message_from_file() first');
        $self->{ENCODING} or return $self->_not_sent('no encoding: call encoding() first');
        _insecure('open', $file);
        $self->_ready_connection or return $self->_not_sent($self->{QMTP_ERROR});
        $self->_debug_package($self->{ENCODING}, $self->{SENDER}, $self->{RECIPIENTS},
            $self->{MESSAGE}, $file) if $self->{DEBUG};
        $self->{QMTP_LAST_RESULT} = undef; # only the usual case keeps it (see _send_usual)
        $reused = $self->{QMTP_USED}++;
        ($status, $by_rcpt) = $self->_send_one($file);
    }
    if ($status < 0 && $RESEND{$status} && ($reused || $status == $NOT_BEGUN)) {
        # The connection was unusable before the message began (closed by
        # the server while idle, or with stray bytes on it), or was dropped
        # just as it began on a reused connection: the message was not
        # delivered, so it goes again, once, on a new connection.
        if ($self->_auto_reconnect((_error($self))[1])) {
            $self->{QMTP_USED} = 1;
            ($status, $by_rcpt) = $self->_send_one($file);
        }
    }
    if ($self->{DEBUG}) {
        $self->_debug_answers;
        $self->_debug_answering($self->{QMTP_MODE_BEFORE}, $self->responses) if $status >= 0;
    }
    my ($code, $why) = _error($self);
    if ($status < 0) {
        carp $why if $file && $why =~ /\AFile '|\ACannot \w+ file '/;
        return $self->_fail($why);
    }
    # Written in full, but something happened to the answers (the server
    # hung up, stalled, or answered what does not fit): the hash says what
    # each recipient got, error() what happened.
    $self->_fail($why) if $code;
    return $by_rcpt;
}

# One run of the object's package. What responses() speaks of is the
# recipients as they went out (not the caller's array, which a signal
# handler may have changed meanwhile), and nothing a handler built from
# the results mid-send.
sub _send_one {
    my ($self, $file) = @_;
    $self->{QMTP_RESPONSES} = undef;
    $self->{QMTP_MODE_BEFORE} = _server_mode($self) if $self->{DEBUG};
    my $saved = $@;
    my ($status, $by_rcpt, $sent_to);
    eval {
        ($status, $by_rcpt, $sent_to) = _send($self, $self->{ENCODING}, $self->{SENDER},
            $self->{RECIPIENTS}, $file ? undef : $self->{MESSAGE}, $file);
        1;
    } or _rethrow($@);
    $@ = $saved;
    $self->{QMTP_SENT_TO} = $sent_to;
    $self->{QMTP_RESPONSES} = undef; # built from the client on demand
    return ($status, $by_rcpt);
}

# What the XS side of send() croaks with (an undefined recipient pushed
# onto recipient()'s list, a handler that changed the message) names the
# caller's line, not this file's; anything else (a signal handler's die)
# goes on unchanged.
sub _rethrow {
    my ($err) = @_;
    croak $1 if !ref $err && $err =~ /\A(Net::QMTP(?:::\w+)?: .*) at \Q${\__FILE__}\E line \d+\.\n\z/s;
    die $err;
}

# send() returns undef before anything was sent: responses() is empty.
sub _not_sent {
    my ($self, $why) = @_;
    $self->{QMTP_RESPONSES} = [];
    return $self->_fail($why);
}

sub send_many {
    my $self = shift;
    ref $self or _not_object('send_many');
    _not_during_async($self, 'send_many');
    my @jobs = @_ == 1 && ref $_[0] eq 'ARRAY' ? @{ $_[0] } : @_;
    _call_limit($self, $self->{QMTP_TOTAL} || 0);
    $self->{QMTP_ERROR} = undef;
    @jobs or return $self->_fail('no jobs: send_many needs at least one');
    # Every job is read once, checked and turned into bytes (in XS, a
    # tainted file name refused too) before anything is sent; the croak
    # names the caller's line.
    my $inputs = _prepare_jobs(\@jobs, $self->{ENCODING});
    croak $inputs unless ref $inputs;
    return $self->_send_inputs($inputs, $CORE{FORM_MANY});
}

# The rounds of send_many (and of each window of send_stream) over jobs
# already prepared: results in order, or undef when no connection. The
# non-blocking send (Net::QMTP::Async) takes the same rounds.
sub _send_inputs {
    my ($self, $inputs, $form) = @_;
    # A message kept where the caller has it (not copied) is read-only until
    # send_many returns, so that every round sends the bytes prepared: a
    # signal handler that assigns to it dies, as during send().
    my $hold = Net::QMTP::_ReadOnly->new(map { \$_->[3] } @$inputs);
    $self->_ready_connection or return undef;
    my $rounds = $self->_rounds($inputs, $form);
    while ($rounds->{todo}) {
        my $mode_before = $self->_round_begins($rounds);
        my ($status, $out, $failed) = _send_many($self, [ @$inputs[ @{ $rounds->{todo} } ] ], $form);
        $self->_round_ends($rounds, $mode_before, $out, $failed) or last;
        $self->_ready_connection or $self->_rounds_unsent($rounds, $self->error);
    }
    return $self->_rounds_results($rounds);
}

# The state of the rounds over prepared inputs: the jobs due in the next
# round (todo; undef when none is), and the results so far.
sub _rounds {
    my ($self, $inputs, $form) = @_;
    # responses() speaks of the last send(): keep it before the client's
    # results are replaced.
    $self->responses unless $self->{QMTP_RESPONSES};
    return { inputs => $inputs, form => $form, results => [], todo => [ 0 .. $#$inputs ], round => 1 };
}

# Before a round: the debug lines of what goes out, and the server's mode.
sub _round_begins {
    my ($self, $rounds) = @_;
    return 0 unless $self->{DEBUG};
    # What goes out: the prepared bytes, not the caller's values again.
    for my $in (@{ $rounds->{inputs} }[ @{ $rounds->{todo} } ]) {
        my ($enc, $sender, $rcpts, $message, $file) = @$in;
        $self->_debug_package(chr $enc, $sender, $rcpts, $message, $file);
    }
    return _server_mode($self);
}

# After a round, with its results and the jobs not answered in full: true
# when some must go again on a new connection (they are the todo then).
sub _round_ends {
    my ($self, $rounds, $mode_before, $out, $failed) = @_;
    my @todo = @{ $rounds->{todo} };
    $rounds->{todo} = undef;
    my ($code, $why) = _error($self);
    if ($self->{DEBUG}) {
        $self->_debug_answers;
        $self->_debug_answering($mode_before,
            map { $_->{responses} } grep { $_->{result} } @$out);
    }
    @{ $rounds->{results} }[@todo] = @$out;
    # Answers lost after their packages were written, whatever else
    # stopped the round: error() says so, the results say whose.
    $rounds->{lost} = $why if $code != 0 && !defined $rounds->{lost}
        && grep { $_->{result} && grep { !$_->{received} } @{ $_->{responses} } } @$out; # lean ones: all received
    return 0 unless @$failed;
    # What stopped this round, if anything: the jobs after it were not
    # begun, and their error says so.
    my ($stopper) = grep { $_->[1] != $NOT_BEGUN } @$failed;
    my $stopped_by = $stopper && 'message ' . ($todo[ $stopper->[0] ] + 1)
        . " failed ($out->[ $stopper->[0] ]{error})";
    # A server too slow for one message would be as slow for the next:
    # after a timeout (Timeout, or the call's TotalTimeout) nothing is
    # sent again; nor after the caller cancelled.
    my $timed_out = $code == $TIMED_OUT || grep { $_->[1] == $TIMED_OUT } @$failed;
    my $timed_out_how = $stopper && $stopper->[1] == $TIMED_OUT
        ? 'while sending message ' . ($todo[ $stopper->[0] ] + 1) . " ($out->[ $stopper->[0] ]{error})"
        : $stopper ? "after $stopped_by" : "($why)";
    my $cancelled = $code == $CORE{E_INTR} && $rounds->{cancelled};
    my @again;
    for (@$failed) {
        my ($k, $st) = @$_;
        my $res = $out->[$k];
        if ($st == $NOT_BEGUN && $cancelled) {
            $res->{error} = "not sent: $why";
        } elsif ($st == $NOT_BEGUN && $timed_out) {
            $res->{error} = "not sent: the connection timed out $timed_out_how";
        } elsif ($st == $NOT_BEGUN && defined $stopper) {
            $res->{error} = "not sent: the connection was closed after $stopped_by";
        } elsif ($RESEND{$st} && $res->{error} !~ /^not sent/) {
            $res->{error} = "not sent: $res->{error}";
        }
        push @again, $todo[$k] if $RESEND{$st} && !$timed_out && !$cancelled;
    }
    # Jobs not written in full are safe to send again on a new
    # connection, as long as each round gets some sent; and once when
    # the first round could begin none (the server had closed the
    # connection while it was idle).
    return 0 if !@again;
    return 0 if @again == @todo && ($rounds->{round} > 1 || defined $stopper);
    $self->_debug('sending ' . @again . ' jobs again on a new connection: '
        . (defined $self->{QMTP_CLOSED_WHY} && $self->{QMTP_CLOSED_WHY} =~ /half-closed/
            ? 'they were held back while the connection was half-closed to see how the server answers'
            : defined $stopper ? "the connection was closed after $stopped_by"
            : "they were not sent ($why)")) if $self->{DEBUG};
    $rounds->{todo} = \@again;
    $rounds->{round}++;
    return 1;
}

# The jobs due in the next round cannot go: no connection (why says).
sub _rounds_unsent {
    my ($self, $rounds, $why) = @_;
    $rounds->{results}[$_]{error} = "not sent: $why" for @{ $rounds->{todo} || [] };
    $rounds->{todo} = undef;
    return;
}

sub _rounds_results {
    my ($self, $rounds) = @_;
    $self->{QMTP_ERROR} = $rounds->{lost} if defined $rounds->{lost} && !defined $self->{QMTP_ERROR};
    return $rounds->{results};
}

my %STREAM_OPTION = map { $_ => 1 } qw(jobs on_result window window_bytes lean);

# A job's size for the window: its message, or its file as it is now.
sub _job_bytes {
    my ($in) = @_;
    return length $in->[3] if defined $in->[3];
    my $size = defined $in->[4] ? -s $in->[4] : 0;
    return $size || 0;
}

sub send_stream {
    my $self = shift;
    ref $self or _not_object('send_stream');
    _not_during_async($self, 'send_stream');
    my $stream = _stream_new('send_stream', @_);
    $self->{QMTP_ERROR} = undef;
    while (my $w = _stream_window($self, $stream)) {
        if (@{ $w->{inputs} }) {
            _call_limit($self, $self->{QMTP_TOTAL} || 0);
            $self->{QMTP_ERROR} = undef;
            $self->_window_results($stream, $w, $self->_send_inputs($w->{inputs}, $stream->{form}));
        }
        _window_rethrow($w);
    }
    $self->{QMTP_ERROR} = $stream->{why};
    return $stream->{taken};
}

# The options of send_stream (and of send_async, func), checked: the
# stream's state.
sub _stream_new {
    my $func = shift;
    croak "$func: options must be NAME => VALUE pairs" if @_ % 2;
    my %opt = @_;
    for my $name (sort keys %opt) {
        croak "$func: unknown option '$name'" unless $STREAM_OPTION{$name} || $func eq 'send_async' && $name eq 'on_done';
    }
    my $next = $opt{jobs};
    if (ref $next eq 'ARRAY') {
        my ($list, $i) = ($next, 0);
        $next = sub { $i < @$list ? $list->[ $i++ ] : undef };
    }
    ref $next eq 'CODE'
        or croak "$func: jobs must be a code reference returning the next job (undef at the end) or an array reference";
    my $done = $opt{on_result};
    ref $done eq 'CODE' or croak "$func: on_result must be a code reference";
    croak "$func: on_done must be a code reference" if defined $opt{on_done} && ref $opt{on_done} ne 'CODE';
    my $window = defined $opt{window} ? $opt{window} : 256;
    $window =~ /\A[1-9][0-9]{0,6}\z/
        or croak "$func: window must be a number of jobs from 1 to 9999999, not '" . _printable("$window") . "'";
    my $window_bytes = defined $opt{window_bytes} ? $opt{window_bytes} : 4 * 1024 * 1024;
    $window_bytes =~ /\A[1-9][0-9]{0,11}\z/
        or croak "$func: window_bytes must be a whole number of bytes from 1, not '" . _printable("$window_bytes") . "'";
    my $stopped = 0;
    return {
        func => $func, next => $next, on_result => $done, on_done => $opt{on_done},
        window => $window, window_bytes => $window_bytes,
        form => $opt{lean} ? $CORE{FORM_LEAN} : $CORE{FORM_STREAM},
        taken => 0, ended => 0, stopped => \$stopped, why => undef,
        stop => sub { $stopped = 1; return },
    };
}

# The stream's next window: what the iterator gives, checked and prepared
# one job at a time, until the window is full by jobs or bytes. undef when
# the stream is over.
sub _stream_window {
    my ($self, $stream) = @_;
    return undef if $stream->{ended} || ${ $stream->{stopped} };
    my $w = { jobs => [], inputs => [] };
    my $bytes = 0;
    while (@{ $w->{jobs} } < $stream->{window} && $bytes < $stream->{window_bytes} && !${ $stream->{stopped} }) {
        # An iterator that dies is treated as a malformed job: the jobs it
        # gave before are sent and reported, then its die goes on.
        my $job;
        if (!eval { $job = $stream->{next}->(); 1 }) { $w->{died} = [$@]; last }
        if (!defined $job) { $stream->{ended} = 1; last }
        # Prepared from a copy of the job (its message shared, copy on
        # write): the iterator may reuse or change the hash and its message
        # for the next job before this window is sent.
        my $in = _prepare_job(ref $job eq 'HASH' ? { %$job } : $job, $self->{ENCODING},
            $stream->{taken} + @{ $w->{jobs} } + 1);
        if (!ref $in) {
            ($w->{bad} = $in) =~ s/\Asend_many:/$stream->{func}:/;
            last;
        }
        push @{ $w->{jobs} }, $job;
        push @{ $w->{inputs} }, $in;
        $bytes += _job_bytes($in);
    }
    return $w;
}

# A window's results (undef: no connection) go to the callback, in order.
sub _window_results {
    my ($self, $stream, $w, $results) = @_;
    my @jobs = @{ $w->{jobs} };
    $results ||= [ map { { result => undef, responses => [], error => 'not sent: ' . $self->error, ok => 0 } } @jobs ];
    my $error = $self->{QMTP_ERROR};
    my ($code, $core_why) = _error($self);
    # A connection that could not be used, or a server that timed out: the
    # rest of the stream stays with the caller, untaken (a server too slow
    # for one message would be as slow for the next, as send_many holds).
    # So does one that failed before the server answered any job of the
    # window: it is not serving.
    my ($unsent) = grep { !$_->{result} && defined $_->{error} && $_->{error} =~ /\Anot sent: / } @$results;
    my $answered = grep { $_->{ok} || $_->{result} && grep { $_->{received} } @{ $_->{responses} } } @$results;
    if ($unsent || $code == $TIMED_OUT || ($code && !$answered)) {
        $stream->{why} = $unsent ? $unsent->{error} : defined $error ? $error : $core_why
            unless defined $stream->{why};
        ${ $stream->{stopped} } = 1;
    }
    $stream->{why} = $error if defined $error && !defined $stream->{why};
    # Every job taken is reported, even after the caller asked to stop:
    # they were sent.
    for my $k (0 .. $#$results) {
        my $r = $results->[$k];
        $r->{job} = $jobs[$k];
        $stream->{on_result}->($r, $stream->{taken}++, $stream->{stop});
    }
    return;
}

# What the iterator did wrong in the window, once the jobs it gave before
# are reported: its die goes on, a malformed job is the caller's error.
sub _window_rethrow {
    my ($w) = @_;
    die $w->{died}[0] if $w->{died};
    croak $w->{bad} if defined $w->{bad};
    return;
}

# The blocking calls wait for nothing else: not while a non-blocking send
# is under way on the same object (its callbacks included).
sub _not_during_async {
    my ($self, $func) = @_;
    croak "$func: a non-blocking send is under way on this object; let it end, or call async_cancel, first"
        if $self->{QMTP_ASYNC};
    return;
}

# Non-blocking sending: Net::QMTP::Async holds the state of the one send
# under way (see SENDING WITHOUT BLOCKING).
sub send_async {
    my $self = shift;
    ref $self or _not_object('send_async');
    croak 'send_async: a non-blocking send is under way on this object already' if $self->{QMTP_ASYNC};
    _not_ready($self, 0); # the checked way to the client: dies if a blocking send is under way
    require Net::QMTP::Async;
    return Net::QMTP::Async->_start($self, @_);
}

sub async_wants {
    my $self = shift;
    ref $self or _not_object('async_wants');
    return unless $self->{QMTP_ASYNC};
    return _nb_wants($self);
}

sub async_ready {
    my ($self, $readable, $writable) = @_;
    ref $self or _not_object('async_ready');
    my $op = $self->{QMTP_ASYNC} or return 0;
    return $op->_ready($self, $readable, $writable);
}

sub async_cancel {
    my ($self, $why) = @_;
    ref $self or _not_object('async_cancel');
    my $op = $self->{QMTP_ASYNC} or return 0;
    return $op->_cancel($self, $why);
}

sub async_pending {
    my $self = shift;
    ref $self or _not_object('async_pending');
    return $self->{QMTP_ASYNC} ? 1 : 0;
}

# Makes the scalars referred to read-only until this object goes, leaving
# alone those that were read-only already.
package Net::QMTP::_ReadOnly;

sub new {
    my ($class, @refs) = @_;
    my @set = grep { defined $$_ && !Internals::SvREADONLY($$_) } @refs;
    Internals::SvREADONLY($$_, 1) for @set;
    return bless \@set, $class;
}

sub DESTROY { Internals::SvREADONLY(${$_}, 0) for @{ $_[0] } }

package Net::QMTP;

sub DESTROY {
    my $self = shift;
    # A non-blocking send under way ends: its jobs are reported (not
    # during global destruction, when the callbacks may be gone).
    # A forked child's copy lets go of its parent's send (the core leaves
    # the parent's connection alone in a child too).
    if (ref $self && Scalar::Util::reftype($self) eq 'HASH' && $self->{QMTP_ASYNC}) {
        my $op = delete $self->{QMTP_ASYNC};
        my $quiet = ${^GLOBAL_PHASE} eq 'DESTRUCT';
        if ($op->{pid} == $$) {
            eval { $op->_cancel($self, 'cancelled: the Net::QMTP object was destroyed', $quiet); 1 } or warn $@;
        }
    }
    _destroy($self);
    # Called explicitly (as 0.06 allowed), it leaves the object not
    # connected, as 0.06's did: a later send() returns undef, it does not
    # reconnect by itself.
    if (ref $self && Scalar::Util::reftype($self) eq 'HASH') {
        $self->{QMTP_WANTED} = 0;
        $self->{SOCKET} = undef;
    }
}

# What $qmtp->{SOCKET} was in 0.06, an IO::Socket::INET, as far as it can
# be safely: while connected, an object that says where (peerhost,
# peerport; peerpath for a Unix socket) and whether the connection is
# still open (connected). Reading or writing the connection, or setting
# its options, is not offered: the C core owns it, and bytes written
# past it would corrupt the protocol. It looks the client up when asked
# (a weak reference), so it is never stale and keeps nothing alive.
package Net::QMTP::Socket;

sub CLONE_SKIP { 1 }

sub _new {
    my ($client) = @_;
    my $self = bless { client => $client }, __PACKAGE__;
    Scalar::Util::weaken($self->{client});
    return $self;
}

sub _where {
    my $client = $_[0]{client} or return '';
    return Net::QMTP::_peer($client);
}

sub connected {
    my $where = _where($_[0]);
    return length $where ? $where : undef;
}

sub opened { return defined connected($_[0]) ? 1 : '' }

sub peerhost {
    my ($host) = _where($_[0]) =~ /\A(.*) port \d+\z/s;
    return $host;
}

sub peerport {
    my ($port) = _where($_[0]) =~ / port (\d+)\z/;
    return defined $port ? $port + 0 : undef;
}

sub peerpath {
    my ($path) = _where($_[0]) =~ /\Aunix socket (.*)\z/s;
    return $path;
}

sub DESTROY { }

our $AUTOLOAD;

sub AUTOLOAD {
    my $name = $AUTOLOAD;
    $name =~ s/.*:://;
    Carp::croak("Net::QMTP: \$qmtp->{SOCKET}->$name is not available: the connection belongs to the C core; "
        . '$qmtp->{SOCKET} offers peerhost, peerport, peerpath and connected only');
}

package Net::QMTP;

# Debug output in libnet's form: ">>>" what is sent, "<<<" what came back.
sub _debug {
    my ($self, $line) = @_;
    return unless $self->{DEBUG};
    warn "$self $line\n";
}

sub _printable {
    my $s = shift;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

sub _debug_answers {
    my $self = shift;
    my $flat = [ _results($self) ];
    $self->_debug('<<< (none: ' . (_error($self))[1] . ')') unless @$flat;
    for (my $i = 0; $i < @$flat; $i += 4) {
        my ($code, $text, $received, $per_package) = @$flat[$i .. $i + 3];
        next if $per_package && $i > 0;
        $self->_debug("<<< $code" . _printable($text) . ($received ? '' : ' (not received)'));
    }
}

# What Debug can say, after a run, of how the client matched the answers
# of messages with several recipients: the C core decides, and this reads
# what it left (the answering style learnt before and after, the flags of
# the results, whether the connection is still open, the error).
# @packages: one responses() list per message sent, in order.
sub _debug_answering {
    my ($self, $before, @packages) = @_;
    $before ||= 0;
    my $answers = $self->{QMTP_ANSWERS};
    my $after = _server_mode($self);
    my $open = _is_open($self);
    my ($code, $why) = _error($self);
    my $half_closed;
    my $wait = $answers ne 'recipient' && $before == 2
        ? 'at once (the server was seen answering once per message before)'
        : "after $self->{QMTP_HALFCLOSE} s without more (HalfCloseAfter)";
    my $half_close = sub {
        my ($n) = @_;
        $half_closed = 1;
        $self->_debug("the first answer of $n came, then no more: the client waited for a server that answers "
            . "once per message and closed its side of the connection (half-close) $wait");
    };
    for my $i (0 .. $#packages) {
        my $list = $packages[$i];
        my $n = @$list;
        next if $n < 2;
        my $got = grep { $_->{received} } @$list;
        my $pp = grep { $_->{per_package} } @$list;
        if ($pp == $n && $answers eq 'package') {
            $self->_debug("one answer stood for $n recipients (declared: Answers => 'package')");
        } elsif ($pp == $n) {
            $half_close->($n);
            $self->_debug("one answer stood for $n recipients (the server answers once per message; "
                . 'shown by its hang-up after the half-close)');
        } elsif ($answers eq 'package') {
            next;
        } elsif ($got == $n && $i == $#packages && !$open && !$code) {
            # Every answer came, yet the connection is closed: only a
            # half-close does that.
            $half_close->($n);
            $self->_debug("the server then sent the other answers: it answers once per recipient");
        } elsif ($got == $n && $before != 1 && $after == 1) {
            $self->_debug("the server answers once per recipient (shown by $n answers for one message)");
        } elsif ($code == $CORE{E_ANSWERS} && $why =~ /one answer for \d+ recipients, then it hung up/) {
            $half_close->($n);
        }
    }
    # Why the next call will have to reconnect, for _ready_connection.
    $self->{QMTP_CLOSED_WHY} = $open ? undef
        : $half_closed ? 'it was half-closed to see how the server answers'
        : $code ? $why : undef;
    return;
}

sub _debug_package {
    my ($self, $enc, $sender, $rcpts, $message, $file) = @_;
    my $len = defined $file ? (-s $file || 0) : length $message;
    my $head = ($len + 1) . ':' . _printable($enc);
    my $body = defined $file ? "[file $file, $len bytes]"
             : $len > 64 ? _printable(substr($message, 0, 48)) . "...[$len bytes]"
             : _printable($message);
    my $list = join '', map { length($_) . ":$_," } @$rcpts;
    $self->_debug(">>> $head$body," . length($sender) . ':' . _printable($sender) . ','
        . length($list) . ':' . _printable($list) . ',');
}

1;

__END__

=head1 NAME

Net::QMTP - Quick Mail Transfer Protocol (QMTP) client, with a C core

=head1 SYNOPSIS

 use Net::QMTP;

 my $qmtp = Net::QMTP->new('mail.example.org', Timeout => 60)
     or die "cannot connect: $@\n";     # add Answers => 'package' for mailfront

 for my $msg (@outbox) {                 # { to => [...], text => "From: ..." }
     $qmtp->new_envelope;                # recipient() and message() append:
     $qmtp->new_message;                 # start every message afresh
     $qmtp->sender('news@example.org');
     $qmtp->recipient($_) for @{ $msg->{to} };
     $qmtp->message($msg->{text});       # bytes: a whole message, LF line ends

     my $result = $qmtp->send;           # true does not mean delivered
     if (!$result) {                     # not sent: delivered to nobody
         warn 'not sent: ', $qmtp->error, "\n";
         retry_later($msg, $_) for @{ $msg->{to} };
         next;
     }
     for my $rcpt (@{ $msg->{to} }) {    # each recipient has its own result
         my $r = $result->{$rcpt};
         if    ($r =~ /^success: /) { done($msg, $rcpt) }         # the server has it
         elsif ($r =~ /^failure: /) { bounce($msg, $rcpt, $r) }   # never: bounce it
         else                       { retry_later($msg, $rcpt) }  # deferral: try later
     }
 }
 $qmtp->disconnect;

See L</"RESULTS AND WHAT TO DO WITH THEM">.

=head1 DESCRIPTION

QMTP is D. J. Bernstein's replacement for SMTP between mail servers: the
message size is declared up front, there is no round trip per recipient,
and many messages can follow each other on one connection. qmail's
C<qmail-qmtpd>, mailfront and other servers speak it, usually on port 209.

Use it to hand mail to a server of your own that speaks QMTP (a relay on
your machine or network) from a program that sends a lot of mail: lists,
notifications, a queue being flushed. Most mail servers on the Internet
speak only SMTP, and QMTP has neither authentication nor encryption (see
L</"WHAT QMTP DOES NOT DO">).

This module is a drop-in replacement for Net::QMTP 0.06 by James Raftery:
every method of that module behaves as it did, so scripts written for it
run unchanged. The protocol is implemented in C, and the module adds what
0.06 lacked: it never dies or hangs because of what a server does, it
has read and write timeouts, it says why something failed, and it sends
each message in a single write.

=head1 QUICK START

On a fresh Debian machine, from the top of the distribution, two
commands. The first installs what is needed (build tools, mailfront and
ucspi-tcp, through sudo when not root), builds the module, starts a real
QMTP server (mailfront under tcpserver) on loopback, sends it a message for
two recipients with L<qmtp-send>, and shows the per-recipient results and
the message as the server stored it:

    bash examples/demo.sh

The second, the test command, builds the module and runs every test (the
tests against a real server skip, saying why, unless mailfront and
ucspi-tcp are installed, as the first command does); CI runs it too, as
the last step of F<.ci/run> (see L</TESTS>):

    perl Makefile.PL && make && make test

To send mail from the shell or cron, see L<qmtp-send>.

=head1 CONSTRUCTOR

=head2 new(HOST [, OPTIONS])

Creates a client and, unless C<DeferConnect> is given, connects to
C<HOST>. Returns the object, or C<undef> when the connection failed; then
C<$@> says why. Dies (C<croak>) without a C<HOST> ("No server specified in
constructor") or with an invalid option value.

C<HOST> is a host name, an IPv4 address or an IPv6 address, optionally
with a port: C<host:port>, C<[2001:db8::1]:port> or C<[2001:db8::1]>. Every
address the name resolves to, IPv6 and IPv4, is tried in turn until one
accepts the connection. A C<HOST> starting with C</> is the path of a
Unix-domain socket on this machine. C<HOST> may also be a reference to a
list of such hosts, tried in order until one connects (as in libnet).

OPTIONS are name/value pairs:

=over 4

=item Port

TCP port (number from 1 to 65535, or service name) used when C<HOST>
names none. Default 209. Anything else dies, C<0> included; so does a
port out of range in C<HOST> (C<host:70000>), at C<new()> or C<server()>.

=item ConnectTimeout

Seconds to wait for each address to accept the connection. Default: the
C<Timeout> given, as with Net::SMTP, else 120.

=item Timeout

Inactivity timeout in seconds, fractions allowed, for every read and
write: a wait ends when nothing moved for this long, while a slow but
moving transfer is never cut. Default 120 (libnet's convention). A
server that sends one byte just inside every C<Timeout> is moving, so
C<Timeout> alone does not bound a call; C<TotalTimeout> does.

=item TotalTimeout

Seconds, fractions allowed, that one call may take in all, however the
server trickles: C<new()> (its connection), C<reconnect()>, C<send()> and
C<send_many()> each start the limit afresh, and every wait within the
call (connecting, a reconnect the call makes by itself, writing, waiting
for answers) ends by then. A message whose limit runs out before it was
written in full is not sent; one written in full gets a C<deferral: > for
each recipient still unanswered, and C<error()> says the call limit was
reached (C<timed out: the call limit of 30 s was reached while sending>).
No limit by default. It is the limit for callers that must not
wait longer, whatever the server does; C<Timeout> is still what notices a
server that stopped.

=item DeferConnect

True: do not connect now; call C<reconnect()> before C<send()>.

=item Debug

True: print what goes over the wire and what the client does, through
C<warn>, in libnet's C<E<gt>E<gt>E<gt>> (sent) and C<E<lt>E<lt>E<lt>>
(received) form. Message bodies are abbreviated.

=item SessionLimit

Seconds a connection may be used for new messages. QMTP servers end a
session after an hour, so by default (3600) a connection that old is
replaced by a new one before the next message starts.

=item HalfCloseAfter

Seconds to wait, once some but not all answers of a message have come,
before closing the writing side of the connection to see whether the
server answers once per message. Default 0.5. Not used with C<Answers
=E<gt> 'package'>. See L</"SERVERS THAT ANSWER ONCE PER MESSAGE">.

=item MaxResponse

The longest answer accepted from the server, in bytes (default 65536);
a longer one is treated as a protocol violation. The text of all the
answers of one C<send()> or C<send_many()> round is kept up to
16 MiB (or C<MaxResponse>, if larger) plus 1 KiB per recipient in all
(so 100,000 recipients keep at most about 114 MiB, not 100,000 times
C<MaxResponse>); an answer
beyond that is a C<deferral: > saying so ("no response kept: the server's
answers exceeded the text limit of this send"), since its text is lost.

=item BusyWait

Seconds (default 0.00005, i.e. 50 microseconds; at most 0.01; 0 turns it
off) to keep looking for the server's answers without sleeping, once a
message is written, before sleeping until they come. It makes C<send()>
to a server on the same machine two to three times as fast, and backs off
by itself when a server is slow or distant; there is seldom a reason to
change it. How it works and what it costs: L<Net::QMTP::Internals/"WAITING
FOR ANSWERS: BusyWait">.

=item LocalAddr

The local address (name or numeric) to connect from. Addresses of the
server of another family (IPv6 when LocalAddr is IPv4) are skipped.

=item Answers

How the server answers a message with several recipients: C<'auto'>
(the default), C<'recipient'> or C<'package'>; anything else dies. QMTP
has the server answer once per recipient (qmail-qmtpd does); mailfront
answers once per message. C<'package'> declares the latter: each
message's one answer stands for all of its recipients (marked
C<per_package> in C<responses()>), messages are pipelined, and nothing
waits: use it for mailfront. C<'recipient'> declares the former, strictly:
answers are matched one per recipient, and one answer is never taken for
a whole message. C<'auto'> finds out on each connection, at a cost; see
L</"SERVERS THAT ANSWER ONCE PER MESSAGE"> for exactly what it infers.

=item SSL

True: QMTPS, TLS from the first byte of every connection, on port 6209
unless C<Port> says otherwise; the server's certificate is checked (see
L</"QMTP OVER TLS (QMTPS)"> and the C<SSL_*> options below, which need
it). Dies, saying how to get TLS, when this Net::QMTP was built without
OpenSSL (C<can_tls>).

=item SSL_ca_file, SSL_ca_path

The CA certificates to trust (a PEM file; a hashed directory, as
C<openssl rehash> makes, or several separated by C<:>), instead of the
system's store. Files given to the C<SSL_*> options must be regular files
(a FIFO would hold C<new()>); each is read, and each directory checked,
in C<new()>.

=item SSL_verify_mode

1 (the default): the certificate chain and the server's name are
checked. 0: neither is, and anyone on the path can read and change the
mail; unsafe, for tests, or with C<SSL_fingerprint>.

=item SSL_hostname

The name the certificate must be for, also sent as SNI; by default the
host given (for an address, the certificate must name the address).

=item SSL_fingerprint

The SHA-256 fingerprint of the server's certificate, as C<'sha256$HEX'>
(colons allowed: C<openssl x509 -fingerprint -sha256> prints it so), or
a list of them: the certificate must be one of them, with or without
C<SSL_verify_mode> (pinning, as s/qmail offers).

=item SSL_cert_file, SSL_key_file

A client certificate chain and its key (PEM; the key may be in the
certificate's file), for servers that ask for one.

=item SSL_passwd_cb

For an encrypted client key: a code reference returning its password
(bytes; OpenSSL takes up to 1024), called once, in C<new()>. Without it,
an encrypted key is refused in C<new()> with an error saying so, as are a
wrong password and a key that is not the certificate's; Net::QMTP never
prompts on the terminal.

=item SSL_min_version

C<'TLSv1_2'> (the default) or C<'TLSv1_3'>.

=back

=head2 can_tls(), can_ssl()

Class methods: true when this build has TLS (it found OpenSSL when it
was built). C<can_ssl> is Net::SMTP's name for it.

=head1 METHODS

=head2 sender(ADDRESS), sender()

Sets or returns the envelope sender (C<undef> until set). The empty string
is the valid null sender used for bounces. Addresses are sent as given,
without angle brackets.

=head2 recipient(ADDRESS), recipient()

Adds one recipient. Returns a reference to the list of recipients (an
empty list when there are none). Order and duplicates are kept.
Recipients stay after C<send()>, as in 0.06: before sending another
message on the same object, call C<new_envelope()>, or the next message
also goes to this one's recipients.

=head2 server(HOST), server()

Sets or returns the server (or list of servers, as in C<new>). A new
server takes effect at the next C<reconnect()>. It is checked as in
C<new>: one with a NUL byte or a port out of range dies, and the server
stays as it was.

=head2 message(TEXT), message()

Appends C<TEXT> to the message and returns the whole message. C<message('')>
makes a valid empty message. The bytes are sent exactly as given: the
message must already be a complete RFC 5322 message with line endings
matching C<encoding()>. If the message comes from a file, this warns
(C<carp>) "Message already created by message_from_file()" and returns
C<undef>. The message stays after C<send()>, as in 0.06: call
C<new_message()> before giving the next one, or it is appended to this
one.

=head2 message_from_file(FILE), message_from_file()

Uses the contents of C<FILE> as the message, read when C<send()> runs (the
file need not exist yet). Without an argument returns the file name. If
the message was made with C<message()>, this warns "Message already
created by message()" and returns C<undef>. A name with a NUL byte dies (C<croak>) at once: the system
would see a shorter name. The file is streamed to the
server, never held in memory whole. If its size changes while it is being
sent, the message is aborted by closing the connection (the server then
discards it, as the protocol provides) and C<send()> returns C<undef>.

=head2 encoding('unix' | 'dos'), encoding()

Sets or returns the encoding byte sent in front of the message: C<"\012">
for unix (lines end in LF), C<"\015"> for dos (lines end in CR LF). Any
other name dies with "Unknown encoding: 'NAME'". The default is dos when
C<$/> is C<"\015\012"> at construction, unix otherwise. The message bytes are
never converted. Note that mailfront refuses the dos encoding with a
deferral; qmail accepts it.

=head2 send()

Sends the message to every recipient and returns a reference to a hash
keyed by recipient. Each value is the server's answer text prefixed with
C<success: > (accepted), C<deferral: > (temporary failure: try again
later) or C<failure: > (permanent failure: do not retry). When a recipient
is listed twice, the hash holds the last answer; C<responses()> has all.

Returns C<undef>, with the reason in C<error()>, when the message could
not be sent at all: no sender, recipient or message; not connected (after
C<disconnect()>, or C<DeferConnect> without C<reconnect()>); the
connection could not be (re)opened; the message file could not be read or
changed size (this also warns, as 0.06 did); or the connection broke or
timed out before the whole message was written. Nothing was delivered in
these cases: a QMTP server discards a message it did not receive in full.

What the server does after the message was written never makes C<send()>
die or hang: an answer that does not come (the server closed the
connection, stalled past C<Timeout> or C<TotalTimeout>, answered
something that is not QMTP, or gave answers that cannot be matched to
the recipients) makes the recipients concerned C<deferral: > with a text
saying what happened, such as C<deferral: no response received:
connection closed by the server>. The hash is still returned, and
C<error()> says what happened (it is C<undef> when every answer came as
expected). The connection is then closed, and the next C<send()> opens a
new one.

Before each message the connection is checked: one that the server closed
while idle, or that is older than C<SessionLimit>, is replaced by a new
one first.

=head2 send_many(JOB, ...)

Sends many messages over the connection without waiting between them
(QMTP pipelining), and returns their results in order. Each JOB is a hash
reference:

 sender      the envelope sender ('' for the null sender)
 recipients  an array reference of one or more recipients
 message     the message bytes, or
 file        the name of a file holding them (exactly one of the two)
 encoding    'unix' or 'dos' (default: the object's encoding())

The jobs may also be passed as one array reference. The object's own
sender, recipients and message are neither used nor changed. Returns a
reference to an array with one hash per job, in the order given:

 result      what send() would have returned: a hash of recipient =>
             "success: ...", "deferral: ..." or "failure: ...",
             or undef when the message was not sent
 responses   what responses() would have returned for it
 error       undef, or why the message was not sent (as error())

Returns C<undef>, with the reason in C<error()>, only when nothing could be
tried (no jobs, or no connection); a malformed job dies (C<croak>) naming
its number before anything is sent.

Writing and reading happen in one loop, so no mix of message sizes and
server behaviour can deadlock. When the connection drops, every message
already answered keeps its answer, every message written in full but not
answered is a deferral for each of its recipients (and C<error()> says
what happened, while the results are still returned), and messages that
were not written in full (so not delivered) are sent again on a new
connection, in rounds that go on as long as each gets some of them sent.
When the server had closed the connection while it sat idle, so that not
one message could begin, they are all sent again once on a new
connection. After a timeout (C<Timeout> or C<TotalTimeout>) nothing is
sent again: a server too slow for one message would be as slow for the
next, so the messages not begun come back with C<result> undef and an
C<error> saying "not sent: the connection timed out ...". A job whose
file cannot be opened, or changes size while being sent, gets C<result>
undef and an C<error> of its own; the other jobs go on. With
C<Answers =E<gt> 'auto'> and a server whose way of answering this
connection has not shown yet, a message with several recipients is sent
alone until its answers show it (see
L</"SERVERS THAT ANSWER ONCE PER MESSAGE">); with C<'package'> or
C<'recipient'> everything is pipelined.

 my $results = $qmtp->send_many(
     { sender => 'me@example.org', recipients => ['a@example.org'], message => $one },
     { sender => 'me@example.org', recipients => ['b@example.org', 'c@example.org'],
       file => '/var/spool/out/42' },
 );
 for my $i (0 .. $#$results) {
     my $r = $results->[$i];
     if (!$r->{result}) { warn "message $i not sent: $r->{error}\n"; next }
     for my $rcpt (keys %{ $r->{result} }) {
         print "$i $rcpt: $r->{result}{$rcpt}\n";
     }
 }

=head2 send_stream(OPTIONS)

Pipelines a stream of jobs of any length over the connection, holding only
the jobs of one window at a time, so that a queue of a million messages
is sent in the memory of a few hundred. Two options are needed,
C<jobs =E<gt> NEXT> and C<on_result =E<gt> CALLBACK>. C<NEXT> is a code reference that
returns the next job (a hash reference, as for C<send_many>) or C<undef>
at the end; an array reference of jobs is taken too. C<CALLBACK> is
called once for every job taken, in order, as

 CALLBACK->($result, $index, $stop)

where C<$result> is the job's entry as in C<send_many>'s results
(C<result>, C<responses>, C<error>) plus C<job>, the job itself (to remove
its file once accepted, say), and C<ok>, true when every recipient
accepted the message (an answer K that the server sent); C<$index> counts
jobs from 0; and calling
C<< $stop->() >> ends the stream: no job is taken after the current
window, whose other jobs are still reported (they were sent). Returns the
number of jobs taken, each of which was reported; C<error()> is
C<undef>, or the first thing that went wrong.

 my $sent = $qmtp->send_stream(
     jobs      => sub { my $name = next_file() or return; { sender => $from,
                        recipients => recipients_of($name), file => $name } },
     on_result => sub { my ($r) = @_; unlink $r->{job}{file} if accepted($r) },
 );

Options:

 window        at most this many jobs in a window (default 256)
 window_bytes  a window stops taking jobs once its messages reach this
               many bytes (default 4 MiB; one job always fits)
 lean          true: the lean result form, below

The lean form is for streams where most messages are accepted: the
result of a job that every recipient accepted is only
C<< { ok => 1, answer => TEXT, job => JOB } >>, TEXT being the server's
answer to the first recipient; any other job's result is the full entry.
Building no structure per recipient makes a stream of messages with ten
recipients about four times as fast.

The stream goes in windows: the jobs of a window are sent as one
C<send_many> would send them, with every guarantee it gives (results in
order, no deadlock, jobs not written in full sent again on a new
connection, deferrals for those written but not answered), and their
results are handed over once the window's answers are all in. Then the
next window is taken. A window's answers are final only then: that a
server answered in a way that does not fit (more answers than
recipients, say) shows only at the end of a run, and it must be able to
turn answers already read into deferrals before anyone acts on them. A
larger window costs memory and helps over long round trips; over
loopback, windows of a few hundred jobs are fastest.

The stream stops taking jobs, leaving the rest with the caller and saying
why in C<error()>, after a window in which the connection timed out
(C<Timeout> or C<TotalTimeout>, which bounds each window), could not be
opened, or failed before the server answered any job. A malformed job
dies (C<croak>) naming its place in the stream (C<send_stream: job 7:
...>), after the jobs before it were sent and reported; so does an
iterator that dies (its die goes on after them). Each job's message is
taken when the iterator gives it: the iterator may reuse or change the
hash and the message for the next job. If C<CALLBACK> dies, so does
C<send_stream>, and the rest of that window is not reported.

=head2 responses()

Returns a reference to the list of all answers of the last C<send()>, in
recipient order, duplicates included. Each element is a hash:

 recipient    the address
 code         'K', 'Z' or 'D'
 text         the server's text after the status byte
 response     the value send() put in its hash, e.g. "success: ok"
 received     1 if the server sent this answer, 0 if it was made up
              because no answer came (code 'Z')
 per_package  1 if the server answered once for the whole message

=head2 error()

Why the last C<new>, C<send>, C<send_many>, C<reconnect> or C<disconnect>
failed, as a string; C<undef> after a success. After a C<send()> or
C<send_many()> that returned its results although some answers were
lost or could not be matched to their recipients after the messages were
written, it says what happened (the results say which recipients it
concerns, as deferrals).

=head2 new_envelope()

Clears sender and recipients; returns 1. The message stays.

=head2 new_message()

Clears the message, text or file; returns 1. The envelope stays.

=head2 disconnect()

Closes the connection and returns 1. When there is none, warns "Socket is
not defined" and returns C<undef>.

=head2 reconnect()

Closes any connection and opens a new one to the current server and port.
Returns 1, or C<undef> with the reason in C<error()>.

=head1 WHAT A RESULT GUARANTEES

A mail client is worth what its results are worth: a C<success: > that
no server gave is a message silently lost, and bytes the caller did not
give are a corrupted message delivered. Whatever the server, the network,
the file system or the caller's own code (overloads, ties, signal
handlers) does, these hold:

=over 4

=item 1.

A recipient is C<success: > only when a K answer arrived, on the same
connection, that belongs to that recipient's own message with certainty.
One answer stands for several recipients only when this connection has
shown that the server answers once per message, or the caller declared it
(C<Answers =E<gt> 'package'>). Answers that do not fit what was expected
(too many, too few and then a hang-up, bytes after the last answer due)
make every recipient they could belong to a C<deferral: >, and
C<error()> says that the server's answers did not match its packages.
Answers are matched to recipients in order, as QMTP has them come: a
server that sends a second answer for a recipient and holds back a later
one, among pipelined messages, is caught only if the extra answer is
there when the last one due is read; otherwise it shows on the next use
of the connection (bytes before a message was complete, which closes it),
after that send's results were given. No client can tell such a server
from one that answers correctly until its surplus arrives.

=item 2.

The bytes a server receives for a message are exactly the bytes the
caller gave, or the message is not completed: the connection is closed
before its last byte, so the server discards it (QMTP provides this). A
message file that changes size while it is sent is such a case.

=item 3.

No call waits longer than its timeouts allow: C<ConnectTimeout> for each
address tried, C<Timeout> without progress, and C<TotalTimeout>, when
given, for the whole call.

=item 4.

Nothing the caller passed is changed by a send: strings are read, never
downgraded or upgraded in place, and values with get-magic, overloading
or ties are read once, before anything is sent. (A message in memory is
read-only while it is being sent, see L</SIGNALS>, and as it was
afterwards.)

=back

=head1 SERVERS THAT ANSWER ONCE PER MESSAGE

The protocol has the server answer once per recipient, as qmail-qmtpd
does. mailfront (the QMTP server Debian ships) answers once per message,
whatever the number of recipients, and then waits; a client waiting for
the other answers would wait until a timeout. With a message for one
recipient the two kinds cannot be told apart and need not be: its one
answer is its recipient's. With several recipients the client has to
know, and the C<Answers> option says how it does.

=head2 Answers =E<gt> 'package': declared once per message

Each message's one answer stands for all of its recipients (marked
C<per_package> in C<responses()>). Messages are pipelined, nothing waits,
and the connection carries the next message as usual: a one-shot send to
two recipients through mailfront takes no longer than one to a single
recipient (well under 0.1 s on loopback; with C<'auto'>, about 0.5 s).
Answers that do not come are deferrals; more answers than messages make
every recipient they could belong to a deferral. B<Declare it for
mailfront.> Do not declare it for a server that answers once per
recipient: its second answer would be taken for the next message.

=head2 Answers =E<gt> 'recipient': declared once per recipient

Strict: answers are matched to recipients one by one, in order, and one
answer is never taken for a whole message. Messages are pipelined. When
a message's answers stop after some but not all, the client closes its
writing side of the connection after C<HalfCloseAfter> (a server that
follows the protocol still sends the rest); when the server hangs up
instead, every recipient still unanswered is a deferral, and so is every
recipient whose answer was matched on the declaration alone (it may
belong to another message); C<error()> says the server's answers did not
match its packages.

=head2 Answers =E<gt> 'auto' (the default): found out on each connection

Whom an answer belongs to is decided by what the current connection has
shown, never by what was seen before:

=over 4

=item *

Until this connection has shown how the server answers, a message with
several recipients is sent alone: nothing is written after it until its
answers are in.

=item *

Two answers for such a message (with nothing written after it) show that
the server answers once per recipient: from then on, messages on this
connection are pipelined.

=item *

One answer, then nothing for C<HalfCloseAfter>: the client closes its
writing side of the connection. A server that answers per recipient then
sends the rest, which shows it as above. A server that answers once per
message hangs up; that shows it, and its one answer then stands for every
recipient of the message (C<per_package>). The connection is over; the
next message opens a new one.

=back

What was seen on earlier connections to the same host and port (kept by
the object) decides only how long to wait, never whom an answer belongs
to. A server seen answering once per message before is half-closed at
once after the one answer of a message with several recipients, without
waiting C<HalfCloseAfter>; its hang-up still has to confirm the rule. A
server seen answering once per recipient before that gives one answer
and then hangs up is not taken to answer per message: the other
recipients are deferrals, C<error()> says that the server's answers did
not match its packages, and what was seen before is forgotten, so that
the next connection shows it afresh.

What C<'auto'> costs:

=over 4

=item * against a server that answers once per recipient (qmail-qmtpd):
the first message with several recipients on each connection is sent
alone until its answers show the style, one round trip; then pipelining
resumes. Declaring C<'recipient'> saves that round trip.

=item * against a server that answers once per message (mailfront):
each message with several recipients needs a connection of its own: after
its one answer the client half-closes (after C<HalfCloseAfter>, 0.5 s by
default, the first time; at once once the server was seen answering that
way) and waits for the server's hang-up, then connects again for the next
message. With C<send_many()>, the messages after it go on the next
connection. Declaring C<'package'> avoids all of it: full pipelining, one
connection, no waiting.

=back

=head1 RESULTS AND WHAT TO DO WITH THEM

A true return from C<send()> means the message was written and every
recipient has a result; it does not mean that any recipient accepted it.
Look at each recipient's result, as the L</SYNOPSIS> does. C<undef> means
the message was not sent at all, so delivered to nobody: keep it and send
it again later (C<error()> says why).

Each recipient's result is the server's answer: C<success: > (the server
has taken responsibility for the message), C<failure: > (it never will:
bounce or drop it), or C<deferral: > (not now: keep the message and try
again later, as a mail queue does, with growing intervals; give up after
some days). A deferral is also what this module reports when it cannot
know what happened: the server closed the connection, timed out or broke
the protocol after the message was written in full. The server may then
have delivered it, so a retry can occasionally deliver a message twice;
that is the protocol's choice, as it is SMTP's, of duplicates over loss.
C<responses()> tells the two kinds of deferral apart: C<received> is 0
when no answer came (or an answer came that could not be matched to its
recipient with certainty, see L</"WHAT A RESULT GUARANTEES">).

A message that was not written in full is never delivered (a QMTP server
discards it), so it is safe to send again at once: C<send()> does so by
itself, once, when the server dropped a connection it had kept idle just
as the message began, and C<send_many()> does it for every such message
as long as each new connection gets some of them sent; not after a
timeout, when those not begun come back "not sent".

=head1 WHAT QMTP DOES NOT DO

=over 4

=item * No authentication. QMTP has none: a server decides what it
accepts from a client by the client's address (for qmail-qmtpd, tcpserver
rules setting C<RELAYCLIENT>). Use it towards servers that accept mail
from your address, and let only your own hosts relay through yours.

=item * No encryption, until TLS is added to this module: everything,
addresses and message, crosses the network in the clear. Use it on one
machine, a private network, or through a tunnel.

=item * No message editing. The bytes are sent as given: C<Bcc:> lines
are not removed (the envelope recipients decide who gets the message, so
take C<Bcc:> out yourself), no C<Date:> or C<Message-ID:> is added (add
them if the message has none; a mail queue such as qmail-inject would),
and line endings are not converted (give LF line ends, or declare CR LF
with C<encoding('dos')>, which mailfront refuses).

=item * No MX lookup or queue. The message goes to the server named, once;
retrying deferrals later is the caller's job (see above), as is bouncing
failures.

=back

=head1 ERRORS

Mistakes in the calling code die (C<croak>) at the caller's line: a
missing server, invalid option values, a port out of range (in C<Port> or
in C<HOST>), a NUL byte in a server, C<LocalAddr> or message file name
("... contains a NUL byte": the system would see a shorter name), an
unknown encoding, an undefined recipient, "Wide character in ..." for
strings that are not bytes, and malformed C<send_many> jobs.

"Wide character in sender" (or recipient, message, file name, or a
C<send_many> job's field) means the string holds characters above 0xFF,
which have no single byte to send. QMTP carries bytes: encode the string
to bytes first, in the encoding its headers declare, usually UTF-8:

 use Encode ();
 $qmtp->message(Encode::encode_utf8($text));   # or Encode::encode('UTF-8', $text)

A message built with C<use utf8> literals or read through an
C<:encoding(UTF-8)> layer needs this; one read as raw bytes does not.
Nothing is ever encoded for you, so that the bytes sent are exactly those
given.

Under taint mode (C<perl -T>), a tainted host, port or C<LocalAddr> dies
when a connection is made with it ("Insecure dependency in connect while
running with -T switch"), and a tainted message file name when the
message is sent ("Insecure dependency in open while running with -T
switch"; stricter than Perl's own C<open> for reading, which lets a
tainted name through). Untaint them as L<perlsec> describes. Under C<-t>
these are warnings.

The 0.06 warnings (C<carp>) stay: "Message
already created by message()", "Message already created by
message_from_file()", "Socket is not defined", and the message file
errors.

Nothing the server or the network does dies: calls return C<undef> (or
deferrals, as above) and C<error()> says what happened, for example:

 cannot resolve 'mx.example' port '209': Name or service not known
 cannot connect to mx.example.org (192.0.2.7 port 209): Connection refused
 cannot connect to mx.example.org (192.0.2.7 port 209): timed out after 120 s
 timed out: no progress for 120 s while sending
 timed out: the call limit of 600 s was reached waiting for responses
 connection lost while sending the package: Broken pipe
 File '/spool/msg' shrank while being sent
 Cannot open file '/spool/msg': No such file or directory
 not connected: call reconnect() first
 the server's answers did not match its packages: one answer for 3
   recipients, then it hung up, though it was declared to answer once
   per recipient

and, for a C<send_many()> job not sent, in its C<error>:

 not sent: the connection timed out while sending message 2 (timed out: ...)
 not sent: the connection was closed after message 3 failed (...)

and in a deferral's text, after C<no response received: >:

 connection closed by the server
 connection closed by the server in the middle of a response
 timed out: no progress for 120 s waiting for responses
 protocol violation: response 2 has a status byte other than K, Z or D

=head1 EXAMPLES

One message, with the reasons for anything but success:

 use Net::QMTP;
 my $qmtp = Net::QMTP->new('mail.example.org', Timeout => 60)
     or die "cannot connect: $@\n";
 $qmtp->sender('news@example.org');
 $qmtp->recipient($_) for @subscribers;
 $qmtp->message_from_file('/var/spool/news/issue-42');
 my $result = $qmtp->send or die 'not sent: ' . $qmtp->error . "\n";
 for my $r (@{ $qmtp->responses }) {
     next if $r->{code} eq 'K';
     print "$r->{recipient}: $r->{response}\n";   # retry the deferrals later
 }

Many messages over one connection:

 my @jobs = map { { sender => 'me@example.org', recipients => [$_->{to}],
                    message => $_->{text} } } @outbox;
 my $results = $qmtp->send_many(@jobs) or die $qmtp->error;

A subclass with its own fields, as with 0.06:

 package My::QMTP;
 use parent 'Net::QMTP';
 sub new { my $self = shift->SUPER::new(@_) or return; $self->{sent} = 0; $self }

=head1 SENDING FROM AN APPLICATION

Applications that build messages with Email::MIME or Email::Stuffer and
send them through L<Email::Sender> use QMTP through
L<Email::Sender::Transport::QMTP>, part of this distribution, with no
change to their code:

 EMAIL_SENDER_TRANSPORT=QMTP EMAIL_SENDER_TRANSPORT_host=mail.example.org

or by naming the transport:

 use Email::Sender::Simple qw(sendmail);
 use Email::Sender::Transport::QMTP;
 sendmail($email, { transport => Email::Sender::Transport::QMTP->new(host => 'mail.example.org') });

The transport converts CR LF line endings to LF (Email::MIME makes CR LF;
mailfront wants LF), and maps the answers to Email::Sender's results so
that none leads the application to send again to a recipient that
accepted the message. It needs Email::Sender (Debian:
libemail-sender-perl); Net::QMTP itself does not.
L<Email::Sender::Transport::QMTP::Persistent> keeps one connection
across messages.

=head1 QMTP OVER TLS (QMTPS)

QMTP has no encryption of its own. QMTPS, as s/qmail's qmail-remote speaks
it, is TLS from the first byte of the connection (implicit TLS, like
SMTPS on port 465), on port 6209, and plain QMTP inside; any QMTP server
serves it behind a TLS wrapper (tlswrapper or stunnel under tcpserver, in
front of qmail-qmtpd or mailfront):

 my $qmtp = Net::QMTP->new('mail.example.org', SSL => 1)
     or die "cannot connect: $@\n";

The certificate is checked by default, against the system's CA store (or
C<SSL_ca_file>, C<SSL_ca_path>), and must be for the host given (or
C<SSL_hostname>), which is also sent as SNI. A certificate not accepted
ends the connect with OpenSSL's reason in C<error()> (and C<$@> from
C<new>): C<TLS: the certificate of the server at 192.0.2.25 port 6209 was
not accepted: certificate has expired> (or C<unable to get local issuer
certificate>, C<self-signed certificate>, C<hostname mismatch>, ...); a
handshake that fails for another reason, or takes longer than
C<ConnectTimeout>, says so. A name's addresses are tried in turn, as
without TLS: a handshake or certificate that fails at one moves on to the
next, and when none connects, the error is the last handshake's (a server
was there) rather than a refusal after it. Each address has its own
C<ConnectTimeout> for connecting and again for the handshake: for a name
with several silent addresses, C<TotalTimeout> bounds the whole. C<SSL_fingerprint> pins the
certificate; C<SSL_verify_mode =E<gt> 0> turns checking off, which is
unsafe and must be said.

Everything else is as without TLS: pipelining, the timeouts, the
non-blocking interface, the results. Message files go through TLS (read,
then encrypted: not sendfile; the kernel's TLS is not used). The
half-close that finds out how a server answers (L</"SERVERS THAT ANSWER
ONCE PER MESSAGE">) sends TLS's close_notify, then closes the writing side
of the socket; but over TLS a server's hang-up after one answer never
stands for all the recipients of a message (the others are deferrals):
a TLS 1.2 wrapper may answer our close_notify with its own at once and
drop what the server behind it still had to send. With several
recipients per message, declare C<Answers> over TLS. C<disconnect> sends
close_notify; a forked child's copy of the object never does (the session
is its parent's).

=head1 SENDING WITHOUT BLOCKING

A daemon built on an event loop cannot wait for a server: every other
client it serves would wait too. C<send_async> starts a send that waits
for nothing; the program's own loop watches the connection and tells the
object when it is ready. It runs on the same engine as C<send()>,
C<send_many()> and C<send_stream()>, with the same timeouts, the same
attribution of answers and the same results. For AnyEvent,
Mojo::IOLoop and IO::Async, L<Net::QMTP::AnyEvent>, L<Net::QMTP::Mojo>
and L<Net::QMTP::IOAsync> (with a Future of the send, if you like) do the
watching:

 use Net::QMTP::AnyEvent;
 my $qmtp = Net::QMTP->new('192.0.2.25', DeferConnect => 1);
 Net::QMTP::AnyEvent->send($qmtp,
     jobs      => \@jobs,
     on_result => sub { my ($result, $index) = @_; ... },
     on_done   => sub { my ($count, $error) = @_; ... },
 );

=head2 send_async(OPTIONS)

Takes C<send_stream>'s options (C<jobs>, C<on_result>, C<window>,
C<window_bytes>, C<lean>), and C<on_done>, a code reference called once
when the send is over, as C<< on_done->($count, $error) >>: the number of
jobs taken (each was reported to C<on_result>, in order, with
C<send_stream>'s result entries) and what went wrong, as C<error()> says
then, or C<undef>. C<jobs> may be an array of jobs (one job is C<[ $job ]>)
or an iterator, called for each job as the send needs it. If no
connection is open (C<DeferConnect>, or one closed since), it connects,
without blocking either; a numeric address needs no name lookup, and a
name is looked up in a thread of its own (getaddrinfo), which the send
looks at every few milliseconds until it is done, in forked children too.
Only a build without POSIX threads blocks in the lookup: give the
address, or resolve it with your loop's own resolver, to avoid that.

Returns an object with C<cancel(WHY)> and C<pending()> (see
L<Net::QMTP::Async>). Bad options, and a first job that is not a job,
die at once, at your line. A later job that is not one, or an iterator
that dies later, ends the stream after the jobs before it, and
C<on_done>'s C<$error> says why; so does anything that ends a stream
taken with C<send_stream>. Callbacks may run before C<send_async>
returns, when nothing needed the network (a connection refused at once,
say). One non-blocking send at a time per object; while it runs, the
blocking calls (C<send>, C<send_many>, C<send_stream>, C<reconnect>,
C<disconnect>) die rather than wait, also from the send's own callbacks;
C<on_done> may start the next C<send_async>.

=head2 async_wants()

What the send under way waits for: C<($fd, $read, $write, $timeout,
$serial)>. C<$fd> is the descriptor to watch (C<undef> while only time
can help, during a name lookup), C<$read> and C<$write> say for what,
C<$timeout> is the number of seconds after which C<async_ready> must be
called even if the descriptor shows nothing (a deadline of the engine:
C<Timeout>, C<ConnectTimeout>, C<TotalTimeout>, the half-close of
C<HalfCloseAfter>), and C<$serial> changes whenever the engine opens a
new connection: a descriptor number seen before is another connection
then, and must be watched afresh. Returns an empty list when nothing is
under way. Ask again after every C<async_ready>: the answer changes as
the send moves on.

=head2 async_ready($readable, $writable)

Tells the send what the loop saw: the descriptor readable, writable (an
error or hang-up counts as both), or neither when the timeout passed.
It never waits. It returns true while the send is still under way, false
once it is over (C<on_done> has been called). The callbacks run inside
it.

=head2 async_cancel(WHY), async_pending()

C<async_cancel> ends the send under way at once: answers already read
stand, the other jobs written are deferrals saying WHY (default
"cancelled"), those not written in full are not sent, no job more is
taken from the iterator, every job taken is reported, C<on_done> is called,
and the connection is closed. Returns true if something was under way.
Destroying the object does the same (WHY says so); so does its
C<DESTROY> at the end of the program, without calling the callbacks
then. C<async_pending> is true while a non-blocking send is under way.

A plain loop around C<select>, for any other event loop to copy:

 $qmtp->send_async(jobs => \@jobs, on_result => \&report);
 while (my ($fd, $read, $write, $timeout) = $qmtp->async_wants) {
     my ($rin, $win) = ('', '');
     vec($rin, $fd, 1) = 1 if defined $fd && $read;
     vec($win, $fd, 1) = 1 if defined $fd && $write;
     my $n = select(my $rout = $rin, my $wout = $win, undef, $timeout);
     $qmtp->async_ready($n > 0 ? (vec($rout, $fd, 1), vec($wout, $fd, 1)) : (0, 0));
 }

One process reaches many servers at once this way, one object per
server: the whole takes about as long as the slowest of them, not the sum
(see L<Net::QMTP::Internals/PERFORMANCE>).

=head1 DIFFERENCES FROM 0.06

=over 4

=item * C<send()> never dies: missing or malformed answers become deferrals.

=item * C<error()> says why a call failed; C<$@> says why C<new> failed.

=item * C<Timeout> bounds every read and write; C<ConnectTimeout> each
connection attempt; C<TotalTimeout>, when given, a whole call.

=item * A recipient is a success only when an answer that belongs to it
with certainty says so (see L</"WHAT A RESULT GUARANTEES">).

=item * Servers that answer once per message (mailfront) are handled:
declared with C<Answers =E<gt> 'package'>, or found out on each
connection (see L</"SERVERS THAT ANSWER ONCE PER MESSAGE">).

=item * SIGPIPE never reaches the process; a connection closed by the
server while idle, or older than the session limit, is reopened before a
message starts.

=item * IPv6, every address of a name, and C<host:port> forms.

=item * C<responses()> keeps every answer in order, duplicates included.

=item * C<send_many()> pipelines many messages over one connection.

=item * Strings with characters above 0xFF die with "Wide character in
sender" (or recipient, message) instead of corrupting the lengths.

=item * A message leaves in one write with TCP_NODELAY, so a reused
connection does not stall 40 ms per message; files are streamed.

=item * After writing a message, C<send()> looks for the answer without
sleeping for up to 50 microseconds (C<BusyWait>) before it sleeps.

=item * Signal handlers run while C<send()> waits; one that changes the
message being sent dies (see L</SIGNALS>).

=item * Unknown constructor options warn; invalid values die, C<Port
=E<gt> 0> and a port out of range in C<HOST> (C<host:70000>) included.

=item * A NUL byte in a server, C<LocalAddr> or message file name dies,
instead of the name being cut short at it.

=item * Under taint mode, a tainted host dies with "Insecure dependency
in connect", as with 0.06 (through IO::Socket), and so do a tainted port
and C<LocalAddr>; a tainted message file name dies with "Insecure
dependency in open" (see L</ERRORS>).

=item * C<LocalAddr>, lists of servers tried in turn, and Unix-domain
socket paths, as libnet users expect.

=item * A message that could not be written in full because the server
dropped an idle connection as it began is sent again, once, on a new
connection (it cannot have been delivered); C<send_many()> does the same
for all the messages of a batch, but after a timeout sends nothing again.

=item * The L<qmtp-send> command.

=back

What a script written for 0.06 may notice, each difference on purpose:

=over 4

=item * B<Debug> output is in libnet's form: each line starts with the
object (C<Net::QMTP=HASH(0x...)>), C<E<gt>E<gt>E<gt>> shows a package as
sent (bodies abbreviated) and C<E<lt>E<lt>E<lt>> each answer; other lines
say what the client does (connecting, reconnecting and why, half-closing
to see how the server answers, one answer standing for several
recipients). 0.06 printed plain lines such as "sender is ...", "sending
envelope sender ..." and "parse response: ...", also from every accessor
call; the accessors print nothing now.

=item * B<reconnect()> returns 1 on success; 0.06 returned its
IO::Socket::INET object (also true). Both return C<undef> on failure.

=item * B<$qmtp-E<gt>{SOCKET}>, 0.06's IO::Socket::INET, is an object
that only says where the connection goes: C<peerhost>, C<peerport> (or
C<peerpath> for a Unix socket) and C<connected> (false once the
connection has been closed). It is C<undef> before the first connection
and after C<disconnect()>, as in 0.06. Everything else (reading, writing,
C<fileno>, socket options) dies saying it is not available: the
connection belongs to the C core, and bytes written past it would
corrupt the protocol. Use C<Timeout>, C<LocalAddr> and the other options
instead of socket options.

=item * B<recipient(undef)> dies ("Undefined recipient"), and so does
C<send()> when an undefined recipient was pushed onto the list that
C<recipient()> returns ("Net::QMTP::send: Undefined recipient"), at the
caller's line. 0.06 sent an empty recipient.

=item * B<server('')> and C<server(undef)> die ("Each server must be a
non-empty string"), and so does an empty list of servers ("No server
specified in constructor"), at C<new()> or C<server()>, leaving the server
as it was; 0.06 stored it, and the next C<reconnect()> failed.

=item * B<An odd number of options> to C<new()> dies ("options must be
NAME =E<gt> VALUE pairs"); 0.06 warned "Odd number of elements in hash
assignment" (under C<-w>) and went on. Unknown option names warn and are
ignored; 0.06 ignored them silently.

=item * B<Methods called on the class> (C<Net::QMTP-E<gt>send>) die
"Net::QMTP::send is an object method: call it on an object from
Net::QMTP-E<gt>new" at the caller's line; 0.06 died there with a bare
"Died".

=item * B<MaxResponse>: an answer longer than 65536 bytes (the default)
is a protocol violation: its recipient and the ones after it get a
C<deferral: > ("no response received: protocol violation: response N is
longer than the limit") and the connection is closed; 0.06 read an
answer of any length into memory.

=item * B<Extra answers> (more than one per recipient) are never taken
for the next message's answers, as 0.06 took them: when they come with
the message's own, every recipient they could belong to gets a
C<deferral: > and C<error()> says "the server's answers did not match its
packages: more answers than recipients"; when they come later, the next
C<send()> finds them before it writes, drops them with the connection and
sends the message on a new one. Either way the connection is closed and
replaced.

=item * B<message_from_file(NAME)> opens NAME as it is: C<'-'> is a file
named F<->, not standard input; C<' f '> keeps its spaces; C<'E<lt>f'>,
C<'E<gt>f'> and C<'cmd|'> are file names, never a redirection or a
command. 0.06 used Perl's two-argument C<open>, which gave these their
shell-like meanings. Send standard input with C<message()> (or with
L<qmtp-send>).

=item * B<A directory as message file>: C<send()> warns and returns
C<undef> ("File 'DIR' is a directory, not a regular file") before writing
anything; 0.06 wrote the start of the message, then failed with "File
'DIR' should be N but we read 0" and left the connection in the middle
of a package.

=item * B<Subclass overrides> of C<disconnect()> and C<encoding()> are no
longer called by the module itself: C<reconnect()> and C<DESTROY> close
the connection directly (0.06 called C<$self-E<gt>disconnect>), and
C<new()> sets the default encoding directly (0.06 called
C<$self-E<gt>encoding('__GUESS__')>). C<new()> still calls
C<$self-E<gt>reconnect>. A subclass that must act on these events should
override C<reconnect()>, C<new()> or C<DESTROY> and call the method it
overrides.

=item * B<encoding('__GUESS__')>, 0.06's internal name for guessing from
C<$/>, dies ("Unknown encoding: '__GUESS__'"). The guess is made at
C<new()>, as before; set C<'unix'> or C<'dos'> explicitly afterwards.

=item * B<Modules no longer loaded>: C<use Net::QMTP> loads neither
IO::Socket (nor IO::Socket::INET, IO::Handle, Socket) nor Text::Netstring,
as 0.06 did. A script that used those without loading them itself must
now C<use> them.

=item * B<Timeout> also bounds connecting when C<ConnectTimeout> is not
given, as Net::SMTP's does; 0.06 had no C<Timeout> (the option was
ignored) and without C<ConnectTimeout> waited as long as the system
does.

=item * B<$/> undefined (C<local $/>) at C<new()> gives the unix encoding
without a warning, as 0.06 did without C<-w>.

=item * B<An explicit DESTROY> closes the connection and leaves the
object not connected, as 0.06's did: C<send()> then returns C<undef>
("not connected: call reconnect() first") until C<reconnect()>.

=back

=head1 THREADS AND FORK

An object belongs to the thread that made it: a new thread gets an
undefined copy (C<CLONE_SKIP>), so nothing is closed twice; make a new
object in the thread. After C<fork>, parent and child share the socket: a
child that destroys its copy only closes its own descriptor and does not
disturb the parent, but only one of them may send over it.

=head1 SIGNALS

The caller's signal handlers run while C<send()> and C<send_many()> wait,
as they do during Perl's own I/O: a handler that dies (C<alarm> with
C<die>) ends the call, and the connection it was using is closed and
reopened at the next call. SIGPIPE never reaches the process. A handler
must not change a message being sent (it is read-only meanwhile) nor
call C<send()>, C<send_many()>, C<reconnect()> or C<disconnect()> on the
object that is sending: either dies, saying so. The details:
L<Net::QMTP::Internals/SIGNALS>.

=head1 PERFORMANCE

C<send()> waits for each message's answers, so for small messages its
rate is set by the round trip to the server: thousands of messages a
second on loopback, a few hundred over a 5 ms link. C<send_many()> and
C<send_stream()> do not wait between messages (over a 5 ms link, 200
messages take milliseconds instead of a second); to a fast server they
are limited by the Perl work each message costs, some 10 microseconds
with one recipient. A message file is
streamed, never held in memory whole. The benchmark (beside a minimal C
client and Net::SMTP), its method and its figures:
L<Net::QMTP::Internals/PERFORMANCE>.

=head1 TESTS

C<perl Makefile.PL && make && make test>, the test command, runs every
test: against a scripted fake server and against a real one (mailfront
under tcpserver on loopback; those skip, saying why, unless the Debian
packages mailfront and ucspi-tcp are installed). CI runs it as the last
step of F<.ci/run>. What the tests cover, the C core's own tests and
fuzzers, the author tests and every step of CI:
L<Net::QMTP::Internals/TESTS>.

=head1 SEE ALSO

L<qmtp-send>, the command; L<Email::Sender::Transport::QMTP>, for
Email::Sender; L<Net::QMTP::Internals>, how the module works inside; the QMTP specification, L<http://cr.yp.to/proto/qmtp.txt>;
L<qmail-qmtpd(8)>; L<Net::SMTP>.

=head1 AUTHOR

Net::QMTP developers. The API is that of Net::QMTP 0.06 by James Raftery.

=head1 LICENSE

This library is free software; you can redistribute it and/or modify it
under the same terms as Perl itself.

=cut
