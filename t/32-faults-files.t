#!perl
# Message files that cannot be sent: missing, a directory, unreadable, or
# changing size while they are streamed. send() returns undef, error() says
# why, a warning is emitted (as 0.06 did), nothing is delivered (a package
# whose file changed size is aborted by closing the connection before its
# last byte), no descriptor is leaked, and the object stays usable.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;
use Test::QMTPFaults;

# A hang must fail the test, not block CI: the default action of SIGALRM
# terminates the process whatever the code under test is doing.
$SIG{ALRM} = 'DEFAULT';
alarm 300;

my $DIR   = tempdir(CLEANUP => 1);

my $FDS_BEFORE = fd_count();

sub write_file {
	my ($path, $bytes) = @_;
	open my $fh, '>', $path or die "$path: $!";
	binmode $fh;
	print {$fh} $bytes;
	close $fh or die "$path: $!";
}

sub client {
	my ($srv, $file) = @_;
	my $q = Net::QMTP->new('127.0.0.1:' . $srv->port, Timeout => 5)
		or die "cannot connect to the test server: $@";
	$q->sender('s@x');
	$q->recipient($_) for @RCPTS;
	$q->message_from_file($file);
	return $q;
}

# send() with warnings captured.
sub send_warn {
	my ($q) = @_;
	my @warnings;
	local $SIG{__WARN__} = sub { push @warnings, $_[0] };
	my $res = eval { $q->send };
	return ($res, $@, @warnings);
}

# All packages the server has received, over every connection.
sub all_packages {
	my ($srv) = @_;
	return map { $srv->packages($_) } 0 .. $srv->connections - 1;
}

# The object sends the next message from a good file.
sub reuse_ok {
	my ($q, $srv, $name) = @_;
	my $good = "$DIR/good-$name";
	write_file($good, "next after $name\n");
	$q->new_message;
	$q->message_from_file($good);
	my ($res, $died, @warnings) = send_warn($q);
	is($died, '', "$name: next send() does not die");
	is_deeply($res, { map { $_ => 'success: ok' } @RCPTS }, "$name: next send() succeeds")
		or diag 'error: ' . ($q->error // 'undef');
	is($q->error, undef, "$name: error() undef");
	is_deeply(\@warnings, [], "$name: no warning");
	my @p = all_packages($srv);
	is(scalar @p, 1, "$name: the server has exactly one complete package: the next one");
	is($p[0] && $p[0]{message}, "next after $name\n", "$name: with the good file's bytes");
}

# A file that cannot be used at all: nothing goes on the wire.
sub unusable_file_ok {
	my ($name, $path, $error_re) = @_;
	my $srv = Test::QMTPServer->new(script => \&serve_well);
	my $q = client($srv, $path);
	my ($res, $died, @warnings) = send_warn($q);
	is($died, '', 'send() does not die');
	is($res, undef, 'send() returns undef');
	like($q->error // '', $error_re, 'error() says why');
	note 'error: ' . ($q->error // 'undef');
	is(scalar @warnings, 1, 'one warning');
	like($warnings[0] // '', $error_re, 'the warning says why');
	like($warnings[0] // '', qr/ at \Q$0\E line \d+/, 'the warning points at the caller');
	ok(!grep({ $_->{code} eq 'K' } @{ $q->responses || [] }), 'no success in responses()');
	Time::HiRes::sleep(0.1);
	is($srv->received(0), '', 'not a byte was sent');
	reuse_ok($q, $srv, $name);
}

# ---------------------------------------------------------------------
# Files that cannot be opened
# ---------------------------------------------------------------------

case 'missing file' => sub {
	unusable_file_ok('missing file', "$DIR/no-such-file", qr/Cannot open file '\Q$DIR\E\/no-such-file'/);
};

case 'a directory' => sub {
	mkdir "$DIR/a-dir" or die "mkdir: $!";
	unusable_file_ok('directory', "$DIR/a-dir", qr/directory/);
};

SKIP: {
	my $path = "$DIR/unreadable";
	write_file($path, "secret\n");
	chmod 0000, $path;
	skip 'running as root (or the file system ignores modes): the file is still readable', 1 if -r $path;
	case 'unreadable file' => sub {
		unusable_file_ok('unreadable', $path, qr/Cannot open file .*[Pp]ermission denied/);
	};
}

# ---------------------------------------------------------------------
# Files that change size while being sent
# ---------------------------------------------------------------------

my $BIG = 30 * 1024 * 1024;

# The server reads the first MiB (the client is then well into the file,
# and far from its end: the kernel buffers a few MiB at most), changes the
# file, then reads everything the client still sends. Deterministic: no
# timing, the change happens while the client is necessarily writing.
sub changing_file_ok {
	my ($name, $change, $error_re) = @_;
	my $path = "$DIR/$name";
	write_file($path, 'm' x $BIG);
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		return serve_well($c) if $n > 0;
		$c->read_bytes(1024 * 1024);
		$change->($path);
		$c->read_until_eof;
	});
	my $q = client($srv, $path);
	my ($res, $died, @warnings) = send_warn($q);
	is($died, '', 'send() does not die');
	is($res, undef, 'send() returns undef');
	like($q->error // '', $error_re, 'error() says the file changed size');
	note 'error: ' . ($q->error // 'undef');
	is(scalar @warnings, 1, 'one warning');
	like($warnings[0] // '', $error_re, 'the warning says why');
	ok(!grep({ $_->{code} eq 'K' } @{ $q->responses || [] }), 'no success in responses()');

	ok($srv->wait_done(0, 20), 'the client closed the connection (the server read to its end)');
	ok($srv->client_closed(0), 'the server saw the client close');
	my @p = $srv->packages(0);
	is(scalar @p, 0, 'the server got no complete package');
	my $head = ($BIG + 1) . ":\n";
	my $got = -s $srv->dir . '/conn-0.in';
	ok(defined $got && $got > length $head, 'the package had started') or diag "received $got bytes";
	cmp_ok($got, '<', length($head) + $BIG + 1,
		"the message netstring's final ',' was never sent ($got bytes received)");
	reuse_ok($q, $srv, $name);
}

case 'file shrinks while being sent' => sub {
	changing_file_ok('shrinks', sub { truncate $_[0], 512 * 1024 or die "truncate: $!" }, qr/shrank/);
};

case 'file grows while being sent' => sub {
	changing_file_ok('grows', sub {
		open my $fh, '>>', $_[0] or die "append: $!";
		print {$fh} 'g' x (1024 * 1024);
		close $fh;
	}, qr/grew/);
};

unlink glob "$DIR/shrinks $DIR/grows";

SKIP: {
	skip 'no /proc/PID/fd on this system', 1 unless defined $FDS_BEFORE;
	is(fd_count(), $FDS_BEFORE, 'no descriptor leaked (sockets or message files) over the fault series');
}

alarm 0;
done_testing();
