package Test::TLS;

# What the TLS tests need, made at test time: certificates from the
# openssl command (a CA; a server certificate for localhost and 127.0.0.1;
# one expired; one for another name; one self-signed; a client
# certificate, and its key encrypted), and the two TLS wrappers in front of a plain QMTP server:
# stunnel4 (its own listener, forwarding to a port) and tlswrapper (under
# tcpserver, in front of mailfront: Test::Mailfront's wrapper option); and
# a scripted TLS server for the faults no wrapper makes.

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

our $VERSION = '0.01';

sub CLONE_SKIP { 1 }

sub _find {
    my ($name) = @_;
    for my $dir (split(/:/, $ENV{PATH} || ''), '/usr/bin', '/usr/sbin', '/bin', '/sbin') {
        return "$dir/$name" if -x "$dir/$name";
    }
    return undef;
}

sub openssl    { _find('openssl') }
sub stunnel    { _find('stunnel4') || _find('stunnel') }
sub tlswrapper { _find('tlswrapper') }

# The programs missing for what is asked (empty when all are there).
sub missing {
    my (@what) = @_;
    my %path = (openssl => openssl(), stunnel4 => stunnel(), tlswrapper => tlswrapper());
    return grep { !$path{$_} } @what;
}

sub _run {
    my (@cmd) = @_;
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec @cmd or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    croak "Test::TLS: '@cmd' failed (status $?)" if $?;
}

# The certificates, in a directory of their own: returns a hash of paths
# (ca, and for each of server, expired, other, self, client: NAME (the
# certificate), NAME_key, NAME_keycert (key and certificate in one file,
# as tlswrapper takes them)), ca_dir (the CA, hashed, for SSL_ca_path),
# client_key_encrypted (password 'secret') and fingerprint{NAME} (SHA-256,
# hex).
sub certificates {
    my $openssl = openssl() or croak 'Test::TLS: no openssl command';
    my $dir = tempdir('qmtp-tls-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my %c = (dir => $dir, ca => "$dir/ca.pem");
    my $key = sub { _run($openssl, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', $_[0]) };
    $key->("$dir/ca.key");
    _run($openssl, 'req', '-x509', '-new', '-key', "$dir/ca.key", '-out', $c{ca}, '-days', 3,
        '-subj', '/CN=Net-QMTP test CA');
    my $sign = sub {
        my ($name, $cn, $san, $usage, @dates) = @_;
        my $k = "$dir/$name.key";
        $key->($k);
        _run($openssl, 'req', '-new', '-key', $k, '-out', "$dir/$name.csr", '-subj', "/CN=$cn");
        open my $fh, '>', "$dir/$name.ext" or croak $!;
        print $fh "subjectAltName=$san\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=$usage\n";
        close $fh;
        if (@dates) {
            # An expired certificate: only openssl ca sets both dates.
            mkdir "$dir/db";
            open my $ix, '>', "$dir/db/index.txt" or croak $!;
            close $ix;
            open my $sn, '>', "$dir/db/serial" or croak $!;
            print $sn "1000\n";
            close $sn;
            open my $cnf, '>', "$dir/ca.cnf" or croak $!;
            print $cnf "[ca]\ndefault_ca = d\n[d]\ndir = $dir/db\ndatabase = $dir/db/index.txt\n",
                "serial = $dir/db/serial\nnew_certs_dir = $dir/db\ndefault_md = sha256\npolicy = p\n",
                "[p]\ncommonName = supplied\n[x]\nsubjectAltName=$san\nextendedKeyUsage=$usage\n";
            close $cnf;
            _run($openssl, 'ca', '-batch', '-config', "$dir/ca.cnf", '-cert', $c{ca}, '-keyfile', "$dir/ca.key",
                '-in', "$dir/$name.csr", '-out', "$dir/$name.pem", '-extensions', 'x', '-notext',
                '-startdate', $dates[0], '-enddate', $dates[1]);
        } else {
            _run($openssl, 'x509', '-req', '-in', "$dir/$name.csr", '-CA', $c{ca}, '-CAkey', "$dir/ca.key",
                '-CAcreateserial', '-out', "$dir/$name.pem", '-days', 3, '-extfile', "$dir/$name.ext");
        }
    };
    $sign->('server', 'localhost', 'DNS:localhost,IP:127.0.0.1', 'serverAuth');
    $sign->('other', 'mail.example.org', 'DNS:mail.example.org', 'serverAuth');
    $sign->('client', 'client', 'DNS:client', 'clientAuth');
    $sign->('expired', 'localhost', 'DNS:localhost,IP:127.0.0.1', 'serverAuth', '20200101000000Z', '20200102000000Z');
    $key->("$dir/self.key");
    _run($openssl, 'req', '-x509', '-new', '-key', "$dir/self.key", '-out', "$dir/self.pem", '-days', 3,
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1');
    for my $name (qw(server other client expired self)) {
        $c{$name} = "$dir/$name.pem";
        $c{"${name}_key"} = "$dir/$name.key";
        $c{"${name}_keycert"} = "$dir/$name.keycert.pem";
        open my $out, '>', $c{"${name}_keycert"} or croak $!;
        for my $part ($c{"${name}_key"}, $c{$name}) {
            open my $in, '<', $part or croak "$part: $!";
            local $/;
            print $out scalar <$in>;
        }
        close $out;
        my $fp = `$openssl x509 -in $c{$name} -noout -fingerprint -sha256`;
        $fp =~ /=([0-9A-Fa-f:]+)/ or croak "no fingerprint of $c{$name}";
        ($c{fingerprint}{$name} = lc $1) =~ tr/://d;
    }
    # The CA as a hashed directory, for SSL_ca_path.
    $c{ca_dir} = "$dir/ca.d";
    mkdir $c{ca_dir} or croak "$c{ca_dir}: $!";
    _run($openssl, 'x509', '-in', $c{ca}, '-out', "$c{ca_dir}/ca.pem");
    _run($openssl, 'rehash', $c{ca_dir});
    # The client's key again, encrypted (password 'secret').
    $c{client_key_encrypted} = "$dir/client.encrypted.key";
    _run($openssl, 'pkey', '-in', $c{client_key}, '-aes256', '-passout', 'pass:secret', '-out', $c{client_key_encrypted});
    return \%c;
}

sub _free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or croak "Test::TLS: no free port: $@";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# stunnel4 on a port of its own, forwarding to 127.0.0.1:to. Options:
# cert, key (required); ca (with client => 1: a client certificate from
# that CA is required); min (e.g. 'TLSv1.3'). Returns an object whose
# port is the TLS one; stopped when it goes.
sub stunnel_to {
    my ($class, $to, %o) = @_;
    my $stunnel = stunnel() or croak 'Test::TLS: no stunnel4';
    my $dir = tempdir('qmtp-stunnel-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    for my $attempt (1 .. 5) {
        my $port = _free_port();
        open my $fh, '>', "$dir/stunnel.conf" or croak $!;
        print $fh "foreground = yes\npid =\ndebug = 4\noutput = $dir/stunnel.log\n",
            "[qmtps]\naccept = 127.0.0.1:$port\nconnect = 127.0.0.1:$to\ncert = $o{cert}\nkey = $o{key}\n",
            ($o{client} ? "CAfile = $o{ca}\nverifyChain = yes\nrequireCert = yes\n" : ''),
            ($o{min} ? "sslVersionMin = $o{min}\n" : '');
        close $fh;
        my $pid = fork;
        croak "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>', '/dev/null';
            open STDERR, '>>', "$dir/stunnel.err";
            exec $stunnel, "$dir/stunnel.conf" or POSIX::_exit(127);
        }
        my $self = bless { pid => $pid, port => $port, dir => $dir, creator => $$ }, $class;
        for (1 .. 100) {
            last if waitpid($pid, POSIX::WNOHANG()) == $pid;
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 1);
            if ($s) { close $s; return $self }
            Time::HiRes::sleep(0.05);
        }
        $self->stop;
    }
    croak "Test::TLS: stunnel did not start: " . _slurp("$dir/stunnel.err") . _slurp("$dir/stunnel.log");
}

# A TLS server of the test's own (IO::Socket::SSL, server certificate from
# $c) in a child, for what no wrapper does on demand: $script->($listener)
# runs there, its output gone, for 20 s at most. Option: local, the address
# to listen on (127.0.0.1). Returns an object whose port is the server's;
# the child is killed when it goes. undef without IO::Socket::SSL.
sub scripted_server {
    my ($class, $c, $script, %o) = @_;
    eval { require IO::Socket::SSL; 1 } or return undef;
    my $l = IO::Socket::SSL->new(LocalAddr => $o{local} || '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1,
        SSL_server => 1, SSL_cert_file => $c->{server}, SSL_key_file => $c->{server_key})
        or croak "Test::TLS: TLS listener: $IO::Socket::SSL::SSL_ERROR";
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        $SIG{ALRM} = sub { POSIX::_exit(2) };
        alarm 20;
        # A script that dies ends the child, never the rest of the test in it.
        POSIX::_exit(eval { $script->($l); 1 } ? 0 : 3);
    }
    my $port = $l->sockport;
    close $l;
    return bless { pid => $pid, port => $port, creator => $$ }, $class;
}

# In a scripted server: the next connection, once a whole package (one
# recipient: the read ends at the ",," that ends the recipients) is read
# from it. Ends the child when the client goes first.
sub accept_package {
    my ($l) = @_;
    my $s = $l->accept or POSIX::_exit(1);
    my $buf = '';
    sysread($s, $buf, 65536, length $buf) or POSIX::_exit(1) until $buf =~ /,,\z/;
    return $s;
}

sub _slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; return scalar <$fh> }

sub port { $_[0]{port} }
sub log  { _slurp("$_[0]{dir}/stunnel.log") }

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    return unless $self->{creator} == $$;
    kill 'TERM', $pid;
    for (1 .. 50) {
        return if waitpid($pid, POSIX::WNOHANG()) == $pid;
        Time::HiRes::sleep(0.02);
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

sub DESTROY { local ($?, $@); $_[0]->stop }

1;
