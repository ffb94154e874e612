# What goes over the wire, byte for byte, and how answers map to results:
# against the scripted server in t/lib, which records every byte it reads.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use IO::Select;

use lib 't/lib';
use Test::QMTPServer;
use Net::QMTP;

alarm 120;
local $SIG{PIPE} = 'DEFAULT'; # a SIGPIPE would kill the test: it must never come

# A server that answers every recipient of every package with $answer.
sub answering_server {
    my ($answer) = @_;
    return Test::QMTPServer->new(sub {
        my ($conn) = @_;
        while (my $pkg = $conn->read_package) {
            $conn->answer_all(substr($answer, 0, 1), substr($answer, 1));
        }
    });
}

sub client {
    my ($srv, @opts) = @_;
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10, @opts)
        or die "new: $@";
    return $q;
}

# The specification's own example, and the corner cases of netstrings.
{
    my $srv = answering_server('Kok');
    my $q = client($srv);
    $q->encoding('unix');
    $q->sender('alice@example.org');
    $q->recipient('bob@example.net');
    $q->recipient('carol@example.com');
    $q->message("From: alice\@example.org\nTo: bob\@example.net\nSubject: hi\n\nHello\n");
    my $r = $q->send;
    is_deeply($r, { 'bob@example.net' => 'success: ok', 'carol@example.com' => 'success: ok' },
        'two recipients, two successes');
    my $spec = "64:\nFrom: alice\@example.org\nTo: bob\@example.net\nSubject: hi\n\nHello\n,"
             . '17:alice@example.org,'
             . '40:15:bob@example.net,17:carol@example.com,,';
    is($srv->received(0), $spec, "the spec's example package, byte for byte");

    $q->new_envelope;
    $q->new_message;
    $q->sender('');
    $q->recipient('x');
    $q->message('');
    ok($q->send, 'empty sender and empty message');
    $q->encoding('dos');
    $q->new_message;
    $q->message("a\r\nb\0\xff");
    $q->new_envelope;
    $q->sender('s');
    $q->recipient('r1');
    $q->recipient('r1');
    ok($q->send, 'dos encoding, NUL and 8-bit bytes, duplicate recipients');
    is($srv->received(0), $spec . "1:\n,0:,4:1:x,,"
        . "7:\ra\r\nb\0\xff,1:s,10:2:r1,2:r1,,",
        'encoding byte inside the message netstring, lengths in bytes, nothing converted');
    is($srv->connections, 1, 'all three packages used one connection');
}

# A file body goes out exactly like the same bytes from memory.
{
    my $dir = tempdir(CLEANUP => 1);
    my $body = join '', map { chr($_ % 256) } 0 .. 300_000;
    open my $fh, '>:raw', "$dir/msg" or die $!;
    print $fh $body;
    close $fh;
    my $srv = answering_server('Kfile');
    my $q = client($srv);
    $q->sender('s@x');
    $q->recipient('r@x');
    $q->message_from_file("$dir/msg");
    is_deeply($q->send, { 'r@x' => 'success: file' }, 'a 300 kB file is sent');
    my $expect = (length($body) + 1) . ":\n$body,3:s\@x,6:3:r\@x,,";
    ok($srv->received(0) eq $expect, 'the file goes out byte for byte in a correct package');

    open $fh, '>:raw', "$dir/empty" or die $!;
    close $fh;
    $q->new_message;
    $q->message_from_file("$dir/empty");
    ok($q->send, 'an empty file is an empty message');
    ok($srv->received(0) eq $expect . "1:\n,3:s\@x,6:3:r\@x,,", '... sent as 1:\n,');
}

# K, Z and D per recipient; the hash and the ordered list.
{
    my $srv = Test::QMTPServer->new(sub {
        my ($conn) = @_;
        $conn->read_package or return;
        $conn->respond('Kfirst ok', 'Zsecond later', "Dthird no\nmore\0lines", 'Kfourth again');
        $conn->read_package or return;
        $conn->write_slowly('2:Ka,2:Zb,3:Dc ,', 0.002); # dribbled a byte at a time
    });
    my $q = client($srv);
    $q->sender('s');
    $q->recipient($_) for qw(a b c a);
    $q->message("m\n");
    my $r = $q->send;
    is_deeply($r, { a => 'success: fourth again', b => 'deferral: second later',
                    c => "failure: third no\nmore\0lines" },
        'success:, deferral: and failure: values; a duplicate keeps the last answer');
    is_deeply([ map { [ @$_{qw(recipient code text response received per_package)} ] } @{ $q->responses } ], [
        [ 'a', 'K', 'first ok',  'success: first ok', 1, 0 ],
        [ 'b', 'Z', 'second later', 'deferral: second later', 1, 0 ],
        [ 'c', 'D', "third no\nmore\0lines", "failure: third no\nmore\0lines", 1, 0 ],
        [ 'a', 'K', 'fourth again', 'success: fourth again', 1, 0 ],
    ], 'responses() keeps every answer in order, duplicates included');
    $q->new_envelope;
    $q->sender('s');
    $q->recipient($_) for qw(x y z);
    is_deeply($q->send, { x => 'success: a', y => 'deferral: b', z => 'failure: c ' },
        'answers dribbled one byte at a time');
    is($srv->connections, 1, '... on the same connection');
}

# A package leaves in one write: the server's first read after it becomes
# readable gets all of it, also on a reused connection (0.06 wrote three
# pieces and Nagle held the later ones back until the first was ACKed).
{
    my $srv = Test::QMTPServer->new(sub {
        my ($conn) = @_;
        my $sock = $conn->socket;
        for (1 .. 4) {
            IO::Select->new($sock)->can_read(10) or return;
            sysread($sock, my $buf, 1 << 20) or return;
            $conn->respond('K' . length $buf);
        }
    });
    my $q = client($srv);
    $q->sender('sender@example.org');
    $q->recipient('rcpt@example.org');
    $q->message("Subject: x\n\n" . ('y' x 1000));
    my $len = length("1013:\n") + 1012 + 1 + length('18:sender@example.org,') + length('20:16:rcpt@example.org,,');
    for my $n (1 .. 4) {
        is_deeply($q->send, { 'rcpt@example.org' => "success: $len" }, "package $n arrives in one piece");
    }
}

# disconnect() closes, send() then refuses; reconnect() opens anew;
# destroying the object closes its connection.
{
    my $srv = answering_server('Kok');
    my $q = client($srv);
    $q->sender('s');
    $q->recipient('r');
    $q->message('m');
    ok($q->send, 'a first message');
    is($q->disconnect, 1, 'disconnect returns 1 when connected');
    ok($srv->wait_closed(0, 5), '... and the server sees the connection closed');
    is($q->send, undef, 'send after disconnect returns undef');
    like($q->error, qr/not connected/, '... because it is not connected');
    is($q->reconnect, 1, 'reconnect returns 1');
    ok($q->send, 'send works again');
    is($srv->connections, 2, '... on a second connection');
    undef $q;
    ok($srv->wait_closed(1, 5), 'destroying the object closes its connection');
}

# Debug shows the wire in libnet's >>> / <<< form, bodies abbreviated.
{
    my $srv = answering_server('Kfine');
    my @lines;
    local $SIG{__WARN__} = sub { push @lines, $_[0] };
    my $q = client($srv, Debug => 1);
    $q->sender('s@x');
    $q->recipient('r@x');
    $q->message('z' x 500);
    ok($q->send, 'send with Debug');
    my $all = join '', @lines;
    like($all, qr/^Net::QMTP=HASH\(0x[0-9a-f]+\) >>> 501:\\x0azzz+\.\.\.\[500 bytes\],3:s\@x,6:3:r\@x,,$/m,
        'Debug shows the package sent, body abbreviated');
    like($all, qr/<<< Kfine$/m, 'Debug shows the answer');
    unlike($all, qr/z{100}/, 'Debug does not dump the whole body');
}

# send()'s usual case goes out in one XS call (_send_usual); whatever is
# unusual makes that call decline, change nothing, and leave it to send().
{
    my $srv = answering_server('Kok');
    my $q = client($srv);
    $q->sender('s@x');
    $q->recipient('r@x');
    $q->message('hello');
    ok($q->send, 'a first message, on the long way (the connection is new)');
    my ($status, $by_rcpt, $reused) = Net::QMTP::_send_usual($q);
    is($status, 0, 'the usual case: sent in one call');
    is_deeply($by_rcpt, { 'r@x' => 'success: ok' }, '... with the result hash');
    is($reused, 1, '... saying the connection had been used');
    is($q->{QMTP_USED}, 2, '... and counting the use');
    is_deeply([ map { $_->{response} } @{ $q->responses } ], ['success: ok'], 'responses() after it');

    my $declines = sub {
        my ($why, $set, $unset) = @_;
        $set->();
        my %before = %$q;
        my @got = Net::QMTP::_send_usual($q);
        is(scalar @got, 0, "declined: $why");
        is_deeply({ %$q }, \%before, "... changing nothing ($why)");
        $unset->();
    };
    $declines->('Debug', sub { $q->{DEBUG} = 1 }, sub { $q->{DEBUG} = undef });
    $declines->('no sender', sub { $q->{SENDER} = undef }, sub { $q->sender('s@x') });
    $declines->('no recipient', sub { $q->{RECIPIENTS} = [] }, sub { $q->{RECIPIENTS} = ['r@x'] });
    $declines->('no message', sub { $q->{MESSAGE} = undef }, sub { $q->{MESSAGE} = 'hello' });
    $declines->('a message file', sub { $q->{MSGFILE} = '/nonexistent' }, sub { $q->{MSGFILE} = undef });
    $declines->('no encoding', sub { $q->{ENCODING} = '' }, sub { $q->encoding('unix') });
    $declines->('a session past its limit', sub { $q->{SESSIONLIMIT} = 0 }, sub { $q->{SESSIONLIMIT} = 3600 });
    $declines->('after disconnect', sub { $q->disconnect }, sub { $q->reconnect });
    ok($q->send, 'send still works after each decline');
    is(scalar @{ [ Net::QMTP::_send_usual($q) ] }, 3, '... and the usual case is back');
    eval { Net::QMTP::_send_usual({}) };
    like($@, qr/not a Net::QMTP object/, '_send_usual checks its object');
}

# The usual case keeps its last result until the next message's answers
# are due, so that freeing it does not delay the next message; a result
# the caller keeps is theirs, untouched by later sends.
{
    require Scalar::Util;
    my $srv = answering_server('Kok');
    my $q = client($srv);
    $q->sender('s@x');
    $q->recipient('r@x');
    $q->message('hello');
    ok($q->send, 'a first message (the long way)');
    my $kept = $q->send;
    is_deeply($kept, { 'r@x' => 'success: ok' }, 'a result the caller keeps');
    my $dropped = $q->send;
    Scalar::Util::weaken(my $watch = $dropped);
    undef $dropped;
    ok(defined $watch, 'a result the caller dropped lives on in the object ...');
    $q->new_envelope;
    $q->sender('s@x');
    $q->recipient('other@x');
    is_deeply($q->send, { 'other@x' => 'success: ok' }, 'the next message gets a result of its own');
    ok(!defined $watch, '... until the next message: then it is freed');
    is_deeply($kept, { 'r@x' => 'success: ok' }, 'the kept result is unchanged by later sends');
    $q->new_message;
    $q->message_from_file(__FILE__);
    ok($q->send, 'a message from a file (the long way)');
    is($q->{QMTP_LAST_RESULT}, undef, '... keeps no last result');
}

done_testing;
