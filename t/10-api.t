# The 0.06 object API, row by row of the compatibility contract, on objects
# that never connect (DeferConnect) or whose connection fails.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;

use Net::QMTP;

my @warnings;
$SIG{__WARN__} = sub { push @warnings, $_[0] };

sub fresh { Net::QMTP->new('127.0.0.1', DeferConnect => 1, @_) }

# new()
eval { Net::QMTP->new() };
like($@, qr/^No server specified in constructor at \Q$0\E/, 'new without a server croaks at the caller');
eval { Net::QMTP->new('') };
like($@, qr/^No server specified in constructor/, 'new with a false server croaks');
eval { Net::QMTP->new('h', 'Debug') };
like($@, qr/NAME => VALUE pairs/, 'an odd option list croaks');
for my $bad ([Port => 'x y'], [Port => 70000], [Timeout => -1], [Timeout => 'soon'],
             [ConnectTimeout => 'x'], [MaxResponse => 0], [BusyWait => -0.001], [BusyWait => 0.5],
             [BusyWait => 'briefly']) {
    eval { fresh(@$bad) };
    like($@, qr/\Q$bad->[0]\E must be/, "new($bad->[0] => '$bad->[1]') croaks naming the option");
}
@warnings = ();
ok(fresh(Tiemout => 3), 'an unknown option does not stop new');
like("@warnings", qr/unknown option 'Tiemout'/, '... but warns about it');
@warnings = ();

my $q = fresh();
isa_ok($q, 'Net::QMTP');
is(ref $q, 'Net::QMTP', 'blessed into Net::QMTP');
ok(UNIVERSAL::isa($q, 'HASH'), 'a blessed hash reference');
my $q2 = fresh(Timeout => 0.25, ConnectTimeout => 1.5, Port => 2209, SessionLimit => 10);
ok($q2, 'fractional timeouts and the other options are accepted');
is(fresh(BusyWait => 0)->{QMTP_BUSYWAIT}, 0, 'BusyWait => 0 (never) is accepted');
is(fresh(BusyWait => '2e-4')->{QMTP_BUSYWAIT}, 0.0002, 'BusyWait takes seconds, as the timeouts do');
is(fresh()->{QMTP_BUSYWAIT}, 0.00005, 'BusyWait is 50 microseconds by default');

# Subclasses keep their own fields and get their own class.
{
    package My::QMTP;
    our @ISA = ('Net::QMTP');
    sub new { my $self = shift->SUPER::new(@_); $self->{mine} = 42 if $self; $self }
    sub mine { $_[0]{mine} }
}
my $sub = My::QMTP->new('127.0.0.1', DeferConnect => 1);
is(ref $sub, 'My::QMTP', 'new blesses into the subclass');
is($sub->mine, 42, 'a subclass keeps its own fields in the hash');
$sub->sender('a@b');
is($sub->sender, 'a@b', 'inherited methods work on the subclass object');
my $copy = { %$q };
eval { Net::QMTP::sender(bless($copy, 'Net::QMTP'), 'x'); Net::QMTP::_is_open(bless({}, 'Net::QMTP')) };
like($@, qr/not a Net::QMTP object/, 'XS methods croak on a hash that is not a real object');

# sender()
is($q->sender, undef, 'sender is undef until set');
is($q->sender(''), '', 'the empty sender is valid');
is($q->sender, '', '... and is kept');
is($q->sender('me@example.org'), 'me@example.org', 'sender(ADDR) returns it');

# recipient()
is_deeply($q->recipient, [], 'recipient() is an empty list ref at first');
$q->recipient('a@x');
$q->recipient('b@x');
is_deeply($q->recipient('a@x'), ['a@x', 'b@x', 'a@x'], 'recipients keep order and duplicates');
eval { $q->recipient(undef) };
like($@, qr/Undefined recipient/, 'an undefined recipient croaks');

# server()
is($q->server, '127.0.0.1', 'server() returns the constructor host');
is($q->server('mx.example.org'), 'mx.example.org', 'server(HOST) sets it');
$q->server('127.0.0.1');

# message() and message_from_file()
is($q->message, undef, 'no message at first');
is($q->message(''), '', "message('') makes an empty message");
is($q->message("a\n"), "a\n", 'message appends');
is($q->message("b\n"), "a\nb\n", '... and returns the whole message');
@warnings = ();
is($q->message_from_file('/tmp/x'), undef, 'message_from_file after message() fails');
like("@warnings", qr/^Message already created by message\(\) at \Q$0\E/, '... with the 0.06 carp');
is($q->new_message, 1, 'new_message returns 1');
is($q->message, undef, 'new_message clears the text');
is($q->message_from_file('/tmp/x'), '/tmp/x', 'message_from_file takes a name');
is($q->message_from_file, '/tmp/x', '... and returns it');
@warnings = ();
is($q->message('more'), undef, 'message after message_from_file fails');
like("@warnings", qr/^Message already created by message_from_file\(\)/, '... with the 0.06 carp');
$q->new_message;
is($q->message_from_file, undef, 'new_message clears the file too');
$q->message('kept');
is_deeply([$q->sender, $q->recipient], ['me@example.org', ['a@x', 'b@x', 'a@x']], 'new_message leaves the envelope');
is($q->new_envelope, 1, 'new_envelope returns 1');
is($q->sender, undef, 'new_envelope clears the sender');
is_deeply($q->recipient, [], '... and the recipients');
is($q->message, 'kept', '... and leaves the message');

# encoding()
{
    local $/ = "\n";
    is(fresh()->encoding, "\012", 'default encoding is unix when $/ is LF');
}
{
    local $/ = "\015\012";
    is(fresh()->encoding, "\015", 'default encoding is dos when $/ is CRLF');
}
is($q->encoding('dos'), "\015", 'dos is CR');
is($q->encoding, "\015", '... and stays');
is($q->encoding('unix'), "\012", 'unix is LF');
eval { $q->encoding('mac') };
like($@, qr/^Unknown encoding: 'mac' at \Q$0\E/, 'an unknown encoding croaks at the caller');
is($q->encoding, "\012", 'a refused encoding changes nothing');

# Wide characters are refused where they are given.
eval { $q->sender("caf\x{e9}\x{263a}") };
like($@, qr/^Wide character in sender/, 'wide sender croaks');
eval { $q->recipient("\x{263a}\@x") };
like($@, qr/^Wide character in recipient/, 'wide recipient croaks');
eval { $q->message("\x{263a}") };
like($@, qr/^Wide character in message/, 'wide message croaks');
is($q->message, 'kept', '... and the message is untouched');
my $latin = "caf\x{e9}";
utf8::upgrade($latin);
$q->sender($latin);
is($q->sender, "caf\xe9", 'a utf8-flagged latin-1 string becomes its bytes');
ok(!utf8::is_utf8($q->sender), '... stored as bytes');

# send() needs everything, and a connection.
my $s = fresh();
is($s->send, undef, 'send without a sender returns undef');
like($s->error, qr/no sender/, '... and error() says why');
$s->sender('s@x');
is($s->send, undef, 'send without recipients returns undef');
like($s->error, qr/no recipient/, '... and error() says why');
$s->recipient('r@x');
is($s->send, undef, 'send without a message returns undef');
like($s->error, qr/no message/, '... and error() says why');
$s->message('');
is($s->send, undef, 'send before any connection (DeferConnect) returns undef');
like($s->error, qr/not connected/, '... and error() says why');

# disconnect()
@warnings = ();
is($s->disconnect, undef, 'disconnect when not connected returns undef');
like("@warnings", qr/^Socket is not defined at \Q$0\E/, '... with the 0.06 carp');

# A port nobody listens on: new fails, $@ and error() say why.
my $probe = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
my $dead_port = $probe->sockport;
close $probe;
$@ = '';
my $none = Net::QMTP->new("127.0.0.1:$dead_port");
is($none, undef, 'new returns undef when the connection fails');
like($@, qr/cannot connect to 127\.0\.0\.1 .*port $dead_port.*refused/i, '$@ says where and why');
my $later = fresh(Port => $dead_port);
is($later->reconnect, undef, 'reconnect returns undef when the connection fails');
like($later->error, qr/refused/i, '... and error() says why');
is($later->send, undef, 'send after a failed reconnect returns undef');

# The default port is 209 (nothing listens there during the tests).
my $default = fresh();
is($default->reconnect, undef, 'reconnect to the default port fails here');
like($default->error, qr/127\.0\.0\.1 port 209\b/, '... which is port 209');

# Objects go away quietly.
@warnings = ();
undef $q;
undef $s;
is("@warnings", '', 'destroying objects warns nothing');

done_testing;
