# QMTPS: TLS from the first byte, against real TLS wrappers in front of
# real and scripted QMTP servers: stunnel4 (TLS 1.3) and tlswrapper (TLS
# 1.2) in front of mailfront, stunnel4 in front of Test::QMTPServer for
# the faults. Certificates are made here with the openssl command.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use POSIX ();
use Socket ();
use Net::QMTP;

my $require = $ENV{NET_QMTP_REQUIRE_TLS};

if (!Net::QMTP->can_tls) {
    # A build without OpenSSL: TLS options say how to get it.
    my $line;
    eval { $line = __LINE__; Net::QMTP->new('127.0.0.1', SSL => 1, DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: SSL => 1, but this Net::QMTP was built without TLS: install OpenSSL's headers .* at \Q$0\E line $line\.$/,
        'without TLS built in, SSL => 1 dies saying how to get it');
    ok(!Net::QMTP->can_ssl, 'can_ssl is false too');
    fail('TLS is required here (NET_QMTP_REQUIRE_TLS=1): build with libssl-dev') if $require;
    done_testing;
    exit 0;
}

use Test::TLS;
use Test::Mailfront;
use Test::QMTPServer;
use Test::QMTPFaults qw(fd_count case serve_well);

my @missing = (Test::TLS::missing(qw(openssl stunnel4 tlswrapper)), Test::Mailfront::missing());
if (@missing) {
    if ($require) {
        plan tests => 1;
        fail("TLS tests need @missing (NET_QMTP_REQUIRE_TLS=1): apt-get install openssl stunnel4 tlswrapper mailfront ucspi-tcp");
        exit 0;
    }
    plan skip_all => "TLS tests need @missing (Debian: openssl stunnel4 tlswrapper mailfront ucspi-tcp)";
}

$SIG{ALRM} = sub { die "timed out\n" };
my $SLOW = $ENV{NET_QMTP_VALGRIND} ? 5 : 1;

my $c = Test::TLS::certificates();

# The cases with a scripted TLS server need IO::Socket::SSL (Debian:
# libio-socket-ssl-perl), which CI installs.
sub no_scripted_server {
    return fail('IO::Socket::SSL is required here (NET_QMTP_REQUIRE_TLS=1): apt-get install libio-socket-ssl-perl')
        if $require;
    return pass('IO::Socket::SSL is not installed: nothing to check');
}
my %trust = (SSL => 1, SSL_ca_file => $c->{ca});
my $msg = "Subject: over TLS\n\n" . join('', map { "line $_\n" } 1 .. 50);

sub one {
    my ($port, %o) = @_;
    my $q = Net::QMTP->new('localhost', Port => $port, Timeout => 10 * $SLOW, ConnectTimeout => 5 * $SLOW, %o);
    return ($q, $@) unless $q;
    $q->sender('s@example.org');
    $q->recipient('r@example.net');
    $q->message($msg);
    my $r = $q->send;
    return ($q, $r ? $r->{'r@example.net'} : 'not sent: ' . $q->error);
}

case 'options are checked at the caller' => sub {
    my $line;
    ok(Net::QMTP->can_tls && Net::QMTP->can_ssl, 'this build has TLS');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL_ca_file => $c->{ca}, DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: SSL_ca_file needs SSL => 1 at \Q$0\E line $line\.$/, 'an SSL_ option without SSL');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_ca_file => "$c->{dir}/none.pem", DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: the CA certificates \Q$c->{dir}\E\/none\.pem cannot be used: No such file or directory at \Q$0\E line $line\.$/,
        'a CA file that is not there is named');
    POSIX::mkfifo("$c->{dir}/fifo", 0600) or die "mkfifo: $!";
    # Opened, a FIFO would hold new() until a writer came: the alarm ends
    # such a wait, and the error is then not the one expected.
    local $SIG{ALRM} = sub { die "new() waited on the FIFO\n" };
    alarm 10 * $SLOW;
    for my $o ([ SSL_ca_file => 'CA certificates' ], [ SSL_cert_file => 'client certificate' ]) {
        eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, $o->[0] => "$c->{dir}/fifo", DeferConnect => 1) };
        like($@, qr/\ANet::QMTP->new: the $o->[1] \Q$c->{dir}\E\/fifo cannot be used: not a regular file at \Q$0\E line $line\.$/,
            "a FIFO for $o->[0]: refused, not opened (which would wait for a writer)");
    }
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_cert_file => $c->{client}, SSL_key_file => "$c->{dir}/fifo", DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: the client key \Q$c->{dir}\E\/fifo cannot be used: not a regular file at/, 'a FIFO for SSL_key_file');
    alarm 0;
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_ca_path => "$c->{dir}/none", DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: the CA directory \Q$c->{dir}\E\/none cannot be used: No such file or directory at \Q$0\E line $line\.$/,
        'a CA directory that is not there is named in new(), not at connect');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_ca_path => $c->{ca}, DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: the CA directory \Q$c->{ca}\E cannot be used: Not a directory at \Q$0\E line $line\.$/,
        'a file for a CA directory');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_fingerprint => 'sha256$abc', DeferConnect => 1) };
    like($@, qr/\ASSL_fingerprint must be the certificate's SHA-256 fingerprint, .* not 'sha256\$abc' at \Q$0\E line $line\.$/,
        'a fingerprint that is none');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_min_version => 'SSLv3', DeferConnect => 1) };
    like($@, qr/\ASSL_min_version must be 'TLSv1_2' or 'TLSv1_3', not 'SSLv3' at \Q$0\E line $line\.$/, 'a version unknown');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_verify_mode => 2, DeferConnect => 1) };
    like($@, qr/\ASSL_verify_mode must be 1 .* or 0 .*, not '2' at \Q$0\E line $line\.$/, 'a verify mode unknown');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_cert_file => $c->{client}, SSL_key_file => $c->{other_key}, DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: the client key \Q$c->{other_key}\E is not the key of the client certificate \Q$c->{client}\E: key values mismatch at \Q$0\E line $line\.$/,
        'a key that is not the certificate\'s, said so');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, SSL_ca_path => "$c->{dir}/empty.d:$c->{ca_dir}", DeferConnect => 1) };
    like($@, qr/\ANet::QMTP->new: the CA directory \Q$c->{dir}\E\/empty\.d cannot be used: No such file or directory at/,
        'SSL_ca_path: each directory of a list is checked');
    my $q = Net::QMTP->new('localhost', SSL => 1, DeferConnect => 1);
    is($q->{PORT}, 6209, 'SSL => 1: port 6209 unless told');
};

my $mf = Test::Mailfront->start(plugins => ['accept']);
my $st = Test::TLS->stunnel_to($mf->port, cert => $c->{server}, key => $c->{server_key});
my $tw = Test::Mailfront->start(plugins => ['accept'], wrapper => [ Test::TLS::tlswrapper(), '-q', '-f', $c->{server_keycert} ]);

for my $w ([ stunnel => $st->port ], [ tlswrapper => $tw->port ]) {
    my ($name, $port) = @$w;
    my $server = $name eq 'stunnel' ? $mf : $tw;
    case "$name: verified by default, byte for byte" => sub {
        $server->clear;
        my ($q, $r) = one($port, %trust);
        like($r, qr/\Asuccess: /, 'accepted');
        ok($server->wait_queued(1, 10), 'queued');
        my ($got) = $server->queued;
        is($got->{message}, $msg, 'the message, byte for byte');
        is_deeply($got->{recipients}, ['r@example.net'], 'its recipient');
        ok($q->disconnect, 'disconnect (close_notify)');
        ($q, $r) = one($port, SSL => 1, SSL_ca_path => $c->{ca_dir});
        like($r, qr/\Asuccess: /, 'verified with SSL_ca_path, a hashed directory');
        mkdir "$c->{dir}/empty.d";
        ($q, $r) = one($port, SSL => 1, SSL_ca_path => "$c->{dir}/empty.d:$c->{ca_dir}");
        like($r, qr/\Asuccess: /, 'SSL_ca_path: a list of directories, as OpenSSL takes it');
    };
    case "$name: pipelined, several recipients, once-per-package answers found out" => sub {
        $server->clear;
        my $q = Net::QMTP->new('localhost', Port => $port, %trust, Timeout => 10 * $SLOW);
        my @jobs = map { { sender => 's@x', recipients => [ "a$_\@x", "b$_\@x" ], message => "job $_\n" } } 1 .. 5;
        my $res = $q->send_many(@jobs);
        # Over TLS a hang-up after one answer never stands for a package: a
        # wrapper may end the stream before the server behind it answered.
        ok(!grep({ my $r = $_; $r->{result} && grep({ /^success/ } map { $r->{result}{$_} } grep { /^b/ } keys %{ $r->{result} }) } @$res),
            'auto over TLS: the one answer is not taken for the other recipient (a deferral)')
            or diag explain [ map { $_->{error} // $_->{result} } @$res ];
        my $p = Net::QMTP->new('localhost', Port => $port, %trust, Answers => 'package');
        $res = $p->send_many(map { { sender => 's@x', recipients => ['r@x'], message => "batch $_\n" } } 1 .. 200);
        is(scalar(grep { $_->{result} && $_->{result}{'r@x'} =~ /^success/ } @$res), 200, '200 pipelined, declared per package');
    };
}

case 'stunnel: a 50 MiB file' => sub {
    $mf->clear;
    my $file = "$c->{dir}/big.eml";
    open my $fh, '>', $file or die $!;
    my $line = ('x' x 1023) . "\n";
    print $fh $line x (50 * 1024);
    close $fh;
    my $q = Net::QMTP->new('localhost', Port => $st->port, %trust, Timeout => 30 * $SLOW);
    $q->sender('s@x');
    $q->recipient('r@x');
    $q->message_from_file($file);
    my $r = $q->send;
    like($r && $r->{'r@x'}, qr/\Asuccess: /, 'accepted');
    ok($mf->wait_queued(1, 30), 'queued');
    my ($got) = $mf->queued;
    is(length $got->{message}, 50 * 1024 * 1024, 'all 50 MiB arrived');
    unlink $file;
};

# Verification failures, each named.
my %bad = (
    expired => [ $c->{expired}, $c->{expired_key}, {}, qr/certificate has expired/ ],
    'another name' => [ $c->{other}, $c->{other_key}, {}, qr/hostname mismatch/ ],
    'self-signed' => [ $c->{self}, $c->{self_key}, {}, qr/self.signed certificate/ ],
    'unknown issuer (the system store)' => [ $c->{server}, $c->{server_key}, { SSL_ca_file => undef }, qr/unable to get local issuer certificate/ ],
);
for my $case (sort keys %bad) {
    my ($cert, $key, $over, $why) = @{ $bad{$case} };
    case "a certificate not accepted: $case" => sub {
        my $s = Test::TLS->stunnel_to($mf->port, cert => $cert, key => $key);
        my %o = (%trust, %$over);
        delete $o{$_} for grep { !defined $o{$_} } keys %o;
        my $fds = fd_count();
        my $q = Net::QMTP->new('localhost', Port => $s->port, %o);
        ok(!$q, 'no connection');
        like($@, qr/\ATLS: the certificate of the server at 127\.0\.0\.1 port \d+ was not accepted: $why/, "error() says why: $why");
        undef $q;
        is(fd_count(), $fds, 'no descriptor left');
        my $insecure = Net::QMTP->new('localhost', Port => $s->port, SSL => 1, SSL_verify_mode => 0);
        ok($insecure, 'SSL_verify_mode => 0 connects all the same (unsafe, and explicit)');
    };
}

case 'pinned fingerprints' => sub {
    my $s = Test::TLS->stunnel_to($mf->port, cert => $c->{self}, key => $c->{self_key});
    my $fp = $c->{fingerprint}{self};
    my ($q, $r) = one($s->port, SSL => 1, SSL_verify_mode => 0, SSL_fingerprint => "sha256\$$fp");
    like($r, qr/\Asuccess: /, 'the pinned certificate, not signed by any CA: accepted');
    (my $colons = uc $fp) =~ s/(..)(?!$)/$1:/g;
    ($q, $r) = one($s->port, SSL => 1, SSL_verify_mode => 0, SSL_fingerprint => [ 'sha256$' . ('0' x 64), $colons ]);
    like($r, qr/\Asuccess: /, 'one of several, written with colons');
    ($q, $r) = one($s->port, SSL => 1, SSL_verify_mode => 0, SSL_fingerprint => 'sha256$' . ('0' x 64));
    ok(!$q, 'another certificate than pinned: no connection');
    like($r, qr/\ATLS: the certificate of the server at .* matches no pinned fingerprint \(its SHA-256 fingerprint is $fp\)/,
        'error() gives the fingerprint it saw');
    ($q, $r) = one($st->port, %trust, SSL_fingerprint => "sha256\$$fp");
    ok(!$q, 'verified and pinned: both must hold');
};

case 'client certificates' => sub {
    my $s = Test::TLS->stunnel_to($mf->port, cert => $c->{server}, key => $c->{server_key}, ca => $c->{ca}, client => 1);
    my ($q, $r) = one($s->port, %trust);
    ok(!$q || $r !~ /\Asuccess/, 'without a client certificate: refused') or diag $r;
    like($r, qr/alert certificate required/, '... and the server\'s alert is said as one') or diag $r;
    ($q, $r) = one($s->port, %trust, SSL_cert_file => $c->{client}, SSL_key_file => $c->{client_key});
    like($r, qr/\Asuccess: /, 'with one: accepted');
    ($q, $r) = one($s->port, %trust, SSL_cert_file => $c->{client_keycert});
    like($r, qr/\Asuccess: /, 'key and certificate in one file');
    ($q, $r) = one($s->port, %trust, SSL_cert_file => $c->{client}, SSL_key_file => $c->{client_key_encrypted},
        SSL_passwd_cb => sub { 'secret' });
    like($r, qr/\Asuccess: /, 'an encrypted key, its password from SSL_passwd_cb');
};

case 'an encrypted client key' => sub {
    my %key = (SSL => 1, DeferConnect => 1, SSL_cert_file => $c->{client}, SSL_key_file => $c->{client_key_encrypted});
    my ($line, $asked) = (0, 0);
    # OpenSSL's own way would be a prompt on the terminal, waiting there.
    local $SIG{ALRM} = sub { die "new() waited: a prompt?\n" };
    alarm 10;
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key) };
    alarm 0;
    like($@, qr/\ANet::QMTP->new: the client key \Q$c->{client_key_encrypted}\E is encrypted, and no password was given for it at \Q$0\E line $line\.$/,
        'without a password: refused at once, saying why, no prompt');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { $asked++; 'wrong' }) };
    like($@, qr/\ANet::QMTP->new: the client key .* cannot be decrypted with the password given: .* at \Q$0\E line $line\.$/,
        'a wrong password, said');
    is($asked, 1, 'SSL_passwd_cb is called once');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { 'x' x 5000 }) };
    like($@, qr/\ANet::QMTP->new: the password given for the client key .* is longer than OpenSSL takes \(\d+ bytes\) at \Q$0\E line $line\.$/,
        'a password too long for OpenSSL: said so');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_cert_file => $c->{server}, SSL_passwd_cb => sub { 'secret' }) };
    like($@, qr/\ANet::QMTP->new: the client key .* is not the key of the client certificate .*: key values mismatch at/,
        'decrypted, but not the certificate\'s key: said so, not "wrong password"');
    ok(Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { 'secret' }), 'the right one: new() succeeds');
    my $pw = do { package Test::OverloadedPassword; use overload '""' => sub { 'secret' }; bless [] };
    ok(Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { $pw }), 'a password object that stringifies');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_passwd_cb => 'secret') };
    like($@, qr/\ASSL_passwd_cb must be a code reference .* at \Q$0\E line $line\.$/, 'a password in place of the code');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { undef }) };
    like($@, qr/\ASSL_passwd_cb returned no password at \Q$0\E line $line\.$/, 'a callback returning none');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { "sec\0ret" }) };
    like($@, qr/\ASSL_passwd_cb returned a password containing a NUL byte at \Q$0\E line $line\.$/, 'a NUL byte');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { "\x{263a}" }) };
    like($@, qr/\ASSL_passwd_cb returned a password with wide characters.* at \Q$0\E line $line\.$/, 'wide characters');
    eval { $line = __LINE__; Net::QMTP->new('localhost', SSL => 1, DeferConnect => 1, SSL_passwd_cb => sub { 'secret' }) };
    like($@, qr/\ASSL_passwd_cb needs SSL_cert_file at \Q$0\E line $line\.$/, 'a password with no key');
    eval { $line = __LINE__; Net::QMTP->new('localhost', %key, SSL_passwd_cb => sub { die "no vault\n" }) };
    is($@, "no vault\n", 'the callback\'s own error comes through');
};

case 'a minimum version' => sub {
    my ($q, $r) = one($tw->port, %trust, SSL_min_version => 'TLSv1_3');
    ok(!$q, 'tlswrapper speaks TLS 1.2 only: no connection with TLS 1.3 required');
    like($r, qr/\ATLS: the handshake with the server at .* failed: /, 'the handshake failed, said');
    ($q, $r) = one($st->port, %trust, SSL_min_version => 'TLSv1_3');
    like($r, qr/\Asuccess: /, 'stunnel speaks TLS 1.3');
};

# Faults over TLS: stunnel in front of the scripted server.
sub behind_stunnel {
    my ($script) = @_;
    my $srv = Test::QMTPServer->new(script => $script);
    my $s = Test::TLS->stunnel_to($srv->port, cert => $c->{server}, key => $c->{server_key});
    return ($srv, $s);
}

case 'faults: the server closes after 2 of 4 answers' => sub {
    my ($srv, $s) = behind_stunnel(sub {
        my ($c, $n) = @_;
        return serve_well($c) if $n > 0;
        for (1 .. 2) { $c->read_package or return; $c->answer_all('K', 'ok') or return }
        $c->read_package for 3, 4; # read, so that the close is an end, not a reset stunnel passes on first
        $c->close;
    });
    my $q = Net::QMTP->new('localhost', Port => $s->port, %trust, Timeout => 5 * $SLOW);
    my $res = $q->send_many(map { { sender => 's@x', recipients => ['r@x'], message => "m $_\n" } } 1 .. 4);
    is(scalar(grep { $_->{result} && $_->{result}{'r@x'} =~ /^success/ } @$res), 2, 'two accepted');
    ok(!grep({ $_->{result} && $_->{result}{'r@x'} =~ /^success/ } @$res[2, 3]), 'none after them is a success');
};

case 'faults: a stall past Timeout' => sub {
    my ($srv, $s) = behind_stunnel(sub { my ($c) = @_; $c->read_package; $c->sleep(6) });
    my $t0 = time;
    my ($q, $r) = one($s->port, %trust, Timeout => 1);
    like($r, qr/\Adeferral: no response received: timed out/, 'a deferral, timed out');
    cmp_ok(time - $t0, '<=', 4 * $SLOW, 'within about the Timeout');
};

case 'faults: plain QMTP where TLS was expected (no TLS record)' => sub {
    my $srv = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->write("8:Kwelcome,"); $c->sleep(2) });
    my ($q, $r) = one($srv->port, %trust);
    ok(!$q, 'no connection');
    like($r, qr/\ATLS: the handshake with the server at .* failed: /, 'the handshake failed, said');
};

case 'faults: closed mid-handshake, and silent in it' => sub {
    my $srv = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->read_bytes(10); $c->close });
    my ($q, $r) = one($srv->port, %trust);
    like($r, qr/\ATLS: the handshake with the server at .* failed: /, 'closed mid-handshake: said');
    my $mute = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->sleep(5) });
    my $t0 = time;
    ($q, $r) = one($mute->port, %trust, ConnectTimeout => 1);
    like($r, qr/\ATLS: the handshake with the server at .* timed out after 1 s/, 'silent: the handshake times out, ConnectTimeout');
    cmp_ok(time - $t0, '<=', 3 * $SLOW, 'within about it');
};

# A hang-up is one answer for a whole message only when the server's TLS
# stream ended properly: anyone on the path can cut a connection.
case 'one answer, then a hang-up without close_notify: no once-per-package answer' => sub {
    my $srv = Test::TLS->scripted_server($c, sub {
        my ($l) = @_;
        my $s = Test::TLS::accept_package($l);
        syswrite($s, '3:Kok,');
        my $end = time + 5;
        while (time < $end) { my $n = sysread($s, my $more, 100); last if defined $n && $n == 0; select(undef, undef, undef, 0.05) }
        $s->close(SSL_no_shutdown => 1); # a TCP end, no close_notify
    }) or return no_scripted_server();
    my $port = $srv->port;
    my $q = Net::QMTP->new('localhost', Port => $port, %trust, Timeout => 5 * $SLOW) or die "new: $@";
    $q->sender('s@x');
    $q->recipient($_) for qw(a@x b@x);
    $q->message("two recipients\n");
    my $r = $q->send;
    $srv->stop;
    like($r->{'a@x'}, qr/\Asuccess: ok/, 'the answer that came is the first recipient\'s');
    like($r->{'b@x'}, qr/\Adeferral: /, 'the second is no success: the end was not the server\'s own')
        or diag explain $r;
    like($q->error, qr/close_notify/, 'error() says how the connection ended');
};

# The end of a connection: close_notify from the process that made it,
# never from a forked child's copy.
case 'close_notify: from disconnect, not from a forked child' => sub {
    my $log = "$c->{dir}/ends.log";
    unlink $log;
    # Each connection: answer every package K; at its end, note whether
    # the client said close_notify (SSL_RECEIVED_SHUTDOWN).
    my $srv = Test::TLS->scripted_server($c, sub {
        my ($l) = @_;
        while (my $s = $l->accept) {
            while (1) {
                my $n = sysread($s, my $got, 65536);
                last unless $n;
                syswrite($s, '3:Kok,') if $got =~ /,,\z/; # a package's end: one recipient each here
            }
            my $clean = Net::SSLeay::get_shutdown($s->_get_ssl_object) & 2 ? 'close_notify' : 'no close_notify';
            open my $fh, '>>', $log;
            print $fh "$clean\n";
            close $fh;
            $s->close(SSL_no_shutdown => 1);
        }
    }) or return no_scripted_server();
    my $port = $srv->port;
    my $ends = sub { my $t = time + 5; until (-s $log || time > $t) { select(undef, undef, undef, 0.05) } open my $fh, '<', $log or return []; [ map { chomp; $_ } <$fh> ] };
    my ($q, $r) = one($port, %trust);
    like($r, qr/\Asuccess: /, 'sent');
    my $child = fork;
    if (defined $child && $child == 0) {
        undef $q;        # the child's copy goes ...
        POSIX::_exit(0); # ... and the child with it
    }
    waitpid $child, 0;
    select(undef, undef, undef, 0.3);
    ok(!-e $log, 'the forked child ended nothing: the server saw no end');
    $q->message("again\n");
    $r = $q->send;
    like($r && $r->{'r@example.net'}, qr/\Asuccess: /, 'the parent sends on, on the same connection');
    ok($q->disconnect, 'disconnect');
    is_deeply($ends->(), ['close_notify'], 'the server saw the connection end with close_notify');
};

case 'a forked child sends on a connection of its own; the parent on its own' => sub {
    my $q = Net::QMTP->new('localhost', Port => $st->port, %trust, Answers => 'package');
    my $job = { sender => 's@x', recipients => ['r@x'], message => "from the parent\n" };
    my $ok = sub { my $r = $_[0]->send_many(@_[1 .. $#_]); $r && $r->[0]{result} && $r->[0]{result}{'r@x'} =~ /^success/ };
    ok($ok->($q, $job), 'the parent sends');
    pipe my $rd, my $wr or die $!;
    my $pid = fork;
    if (defined $pid && $pid == 0) {
        close $rd;
        print $wr($ok->($q, { %$job, message => "from the child\n" }) ? "ok\n" : "failed: " . $q->error . "\n");
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    my $child = <$rd>;
    waitpid $pid, 0;
    is($child, "ok\n", 'the child sends too (on a new connection: TLS state cannot be shared)');
    ok($ok->($q, $job), 'and the parent again, on its connection') or diag $q->error;
};

# OpenSSL writes with write(2): a server that resets the connection must
# not kill the process with SIGPIPE.
case 'a reset mid-package over TLS: an error, no SIGPIPE' => sub {
    my $srv = Test::TLS->scripted_server($c, sub {
        my ($l) = @_;
        my $s = $l->accept or POSIX::_exit(1);
        sysread($s, my $got, 1000);
        $s->close(SSL_no_shutdown => 1); # unread bytes: the kernel resets
    }) or return no_scripted_server();
    my $port = $srv->port;
    local $SIG{PIPE} = 'DEFAULT';
    my $q = Net::QMTP->new('localhost', Port => $port, %trust, Timeout => 5 * $SLOW) or die "new: $@";
    my $res = $q->send_many({ sender => 's@x', recipients => ['r@x'], message => 'x' x (20 * 1024 * 1024) });
    $srv->stop;
    ok(!$res->[0]{result}, 'not sent (and the process is alive)');
    like($res->[0]{error}, qr/\Anot sent: .*(?:reset|closed|lost)/, 'the error says the connection went');
};

# A name's addresses are tried in turn over TLS too: a handshake that
# fails at one (a wrapper gone wrong, a server without TLS) is no reason to
# give up the next. .ci/run maps qmtp-dual.test to ::1 and 127.0.0.1.
case 'a failed handshake at one address: the next address is tried' => sub {
    my ($err, @ai) = Socket::getaddrinfo('qmtp-dual.test', 0, { socktype => Socket::SOCK_STREAM() });
    my @hosts = map { (Socket::getnameinfo($_->{addr}, Socket::NI_NUMERICHOST()))[1] } @ai;
    if (@hosts < 2) {
        return fail('qmtp-dual.test must resolve to ::1 and 127.0.0.1 (NET_QMTP_REQUIRE_TLS=1): see .ci/run') if $require;
        return pass('qmtp-dual.test does not resolve to two addresses (set up by .ci/run): nothing to check');
    }
    my $good = Test::TLS->scripted_server($c, sub {
        my ($l) = @_;
        my $s = Test::TLS::accept_package($l);
        syswrite($s, '7:Ksecond,');
        sysread($s, my $end, 1); # until the client goes
    }, local => $hosts[1]) or return no_scripted_server();
    require IO::Socket::IP;
    my $l = IO::Socket::IP->new(LocalHost => $hosts[0], LocalPort => $good->port, Listen => 5, ReuseAddr => 1)
        or return fail("cannot listen on $hosts[0] port " . $good->port . ": $@");
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        alarm 20;
        while (my $s = $l->accept) { syswrite($s, "this is no TLS\r\n"); close $s }
        POSIX::_exit(0);
    }
    close $l;
    my %dual = (%trust, Port => $good->port, SSL_hostname => 'localhost', ConnectTimeout => 5 * $SLOW, Timeout => 5 * $SLOW);
    my $q = Net::QMTP->new('qmtp-dual.test', %dual);
    ok($q, "no TLS at $hosts[0]: connected at $hosts[1]") or diag $@;
    if ($q) {
        $q->sender('s@x');
        $q->recipient('r@x');
        $q->message("hi\n");
        my $r = $q->send;
        is($r && $r->{'r@x'}, 'success: second', '... and sent there');
        undef $q;
    }
    $good->stop;
    $q = Net::QMTP->new('qmtp-dual.test', %dual);
    ok(!$q, 'no TLS at the first, nobody at the second: no connection');
    like($@, qr/\ATLS: the handshake with the server at .* failed: /, '$@ is what the first one\'s handshake said, not the refusal')
        or diag $@;
    kill 'KILL', $pid;
    waitpid $pid, 0;
};

# Bytes that are no TLS record, after the handshake: the end of the run,
# said as what it is (not as a hang-up); the answer before them is kept.
case 'a bad TLS record mid-stream' => sub {
    my $srv = Test::TLS->scripted_server($c, sub {
        my ($l) = @_;
        my $s = Test::TLS::accept_package($l);
        syswrite($s, '3:Kok,');
        select(undef, undef, undef, 0.2);
        open my $raw, '>&=', fileno($s) or POSIX::_exit(1);
        syswrite($raw, "hello, this is no TLS record\n");
        # The next connection is served well.
        my $next = Test::TLS::accept_package($l);
        syswrite($next, '3:Kok,' x 3); # a@x, b@x and c@x
        sleep 5;
    }) or return no_scripted_server();
    my $q = Net::QMTP->new('localhost', Port => $srv->port, %trust, Timeout => 5 * $SLOW, Answers => 'recipient')
        or die "new: $@";
    $q->sender('s@x');
    $q->recipient($_) for qw(a@x b@x);
    $q->message("two recipients\n");
    my $r = $q->send;
    like($r->{'a@x'}, qr/\Asuccess: ok/, 'the answer before the bad record is kept');
    like($r->{'b@x'}, qr/\Adeferral: .*bad TLS record/, 'the other: a deferral, saying why') or diag explain $r;
    like($q->error, qr/\Aconnection ended by a bad TLS record from the server: /, 'error() says so, not "closed"');
    ok($q->reconnect, 'the object connects again') or diag $q->error;
    $q->recipient('c@x');
    $r = $q->send;
    like($r && $r->{'c@x'}, qr/\Asuccess: ok/, '... and its new TLS session is not the broken one') or diag explain $r;
    $srv->stop;
};

case 'qmtp-send --tls' => sub {
    my $script = -f 'blib/script/qmtp-send' ? 'blib/script/qmtp-send' : 'bin/qmtp-send';
    my $run = sub {
        my ($in, @args) = @_;
        my $dir = $c->{dir};
        open my $fh, '>', "$dir/in.eml" or die $!;
        print $fh $in;
        close $fh;
        my $cmd = join(' ', map { quotemeta } $^X, '-Mblib', $script, @args) . " < $dir/in.eml 2>$dir/err";
        my $out = `$cmd`;
        my $status = $? >> 8;
        open my $e, '<', "$dir/err" or die $!;
        local $/;
        return ($status, $out, scalar <$e>);
    };
    $mf->clear;
    my ($status, $out, $err) = $run->("Subject: cli\n\nhello\n", '--tls', '--tls-ca-file', $c->{ca},
        '-s', 'localhost', '-p', $st->port, '-v', 'r@example.net');
    is($status, 0, 'exit 0') or diag $err;
    like($out, qr/\tr\@example\.net\tsuccess: /, 'the recipient accepted');
    ok($mf->wait_queued(1, 10), 'queued');
    ($status, $out, $err) = $run->("hello\n", '--tls', '-s', 'localhost', '-p', $st->port, 'r@example.net');
    is($status, 111, 'a certificate not accepted: 111, try again later');
    like($err, qr/\Aqmtp-send: TLS: the certificate of the server at .* was not accepted: unable to get local issuer certificate/,
        '... saying why');
    ($status, $out, $err) = $run->("hello\n", '--tls-ca-file', $c->{ca}, 'r@example.net');
    is($status, 100, 'a --tls- option without --tls: 100');
    like($err, qr/\Aqmtp-send: --tls-ca-file goes with --tls/, '... saying so');

    my $s = Test::TLS->stunnel_to($mf->port, cert => $c->{server}, key => $c->{server_key}, ca => $c->{ca}, client => 1);
    my @key = ('--tls', '--tls-ca-file', $c->{ca}, '-s', 'localhost', '-p', $s->port,
        '--tls-cert', $c->{client}, '--tls-key', $c->{client_key_encrypted});
    open my $pw, '>', "$c->{dir}/password" or die $!;
    print $pw "secret\n";
    close $pw;
    ($status, $out, $err) = $run->("hello\n", @key, '--tls-key-password-file', "$c->{dir}/password", 'r@example.net');
    is($status, 0, 'an encrypted client key and --tls-key-password-file: exit 0') or diag $err;
    ($status, $out, $err) = $run->("hello\n", @key, 'r@example.net');
    is($status, 100, 'the encrypted key without its password: 100, no prompt');
    like($err, qr/\Aqmtp-send: the client key .* is encrypted, and no password was given for it/, '... saying so');
    ($status, $out, $err) = $run->("hello\n", @key, '--tls-key-password-file', "$c->{dir}/none", 'r@example.net');
    is($status, 100, 'a password file that is not there: 100');
    like($err, qr/\Aqmtp-send: --tls-key-password-file \Q$c->{dir}\E\/none: No such file/, '... naming it');
    ($status, $out, $err) = $run->("hello\n", '--tls', '--tls-key-password-file', "$c->{dir}/password", 'r@example.net');
    is($status, 100, 'a password file without --tls-cert: 100');
    like($err, qr/\Aqmtp-send: --tls-key-password-file goes with --tls-cert/, '... in qmtp-send\'s own terms');
    # From a pipe (as <(pass show key) gives it), and a FIFO nobody writes.
    my $fifo = "$c->{dir}/password.fifo";
    POSIX::mkfifo($fifo, 0600) or die "mkfifo: $!";
    # O_RDWR: a writer already there, as the shell's is for <(...).
    sysopen(my $writer, $fifo, POSIX::O_RDWR()) or die "$fifo: $!";
    syswrite($writer, "secret\n") == 7 or die "$fifo: $!";
    ($status, $out, $err) = $run->("hello\n", @key, '--tls-key-password-file', $fifo, 'r@example.net');
    close $writer;
    is($status, 0, 'the password from a pipe: exit 0') or diag $err;
    my $t0 = time;
    ($status, $out, $err) = $run->("hello\n", @key, '--tls-key-password-file', $fifo, 'r@example.net');
    is($status, 100, 'a FIFO that nobody writes: 100 ...');
    cmp_ok(time - $t0, '<', 5 * $SLOW, '... at once, no wait for a writer');
};

case 'the Email::Sender transport with ssl' => sub {
    return pass('Email::Sender is not installed: nothing to check')
        unless eval { require Email::Sender::Simple; require Email::Sender::Transport::QMTP; 1 };
    $mf->clear;
    my $email = "From: a\@example.org\nTo: r\@example.net\nSubject: transport\n\nhi\n";
    my $t = Email::Sender::Transport::QMTP->new(host => 'localhost', port => $st->port, ssl => 1,
        ssl_options => { SSL_ca_file => $c->{ca} });
    my $r = Email::Sender::Simple->try_to_send($email, { transport => $t, to => ['r@example.net'], from => 'a@example.org' });
    ok($r && $r->isa('Email::Sender::Success'), 'sent') or diag explain $r;
    ok($mf->wait_queued(1, 10), 'queued');
    my $u = Email::Sender::Transport::QMTP->new(host => 'localhost', port => $st->port, ssl => 1);
    eval { Email::Sender::Simple->send($email, { transport => $u, to => ['r@example.net'], from => 'a@example.org' }) };
    my $f = $@;
    ok(ref $f && $f->isa('Email::Sender::Failure::Temporary'), 'a certificate not accepted: a temporary failure');
    like(ref $f ? $f->message : $f, qr/was not accepted: unable to get local issuer certificate/, '... saying why');
    my $line;
    eval { $line = __LINE__; Email::Sender::Transport::QMTP->new(ssl_options => { SSL_ca_file => $c->{ca} }) };
    like($@, qr/\AEmail::Sender::Transport::QMTP: ssl_options need ssl => 1 at \Q$0\E line $line\.$/, 'ssl_options without ssl');
};

case 'non-blocking over TLS' => sub {
    require Test::AsyncCases;
    my $q = Net::QMTP->new('localhost', Port => $st->port, %trust, DeferConnect => 1);
    my @results;
    my ($done) = Test::AsyncCases::poll_driver($q, on_result => sub { $results[ $_[1] ] = $_[0] },
        jobs => [ map { { sender => 's@x', recipients => ['r@x'], message => "async $_\n" } } 1 .. 20 ]);
    is($done->[0], 20, 'every job reported');
    is(scalar(grep { $_->{ok} } @results), 20, 'every job accepted') or diag explain [ map { $_->{error} } @results ];
};

done_testing;
