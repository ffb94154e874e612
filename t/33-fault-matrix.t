#!perl
# The fault matrix: the same faults as t/30-faults.t, but at EVERY place
# they can happen instead of a few hand-picked ones.
#
#   1. The server closes (FIN, then RST) at every byte offset of a
#      3-recipient response stream, for short and for 20-byte texts.
#   2. The server closes (FIN, then RST) after reading exactly k bytes of a
#      300 kB package, for every k near both ends and 50 k in between.
#   3. Answers for 10 recipients dribbled a byte at a time, one write per
#      answer, and all in one write (t/20-wire.t has 3 dribbled recipients).
#   4. Every kind of malformed answer, as answer 1, 2 and 3; bytes the
#      server sends on a connection before any package.
#   5. The automatic reconnect inside send() to an address that never
#      completes the handshake (t/31 covers new() and reconnect() only).
#
# One Net::QMTP object runs each whole loop, so every case also proves the
# object is still usable after the one before. The scripted server reads
# what to do from a mode file when it accepts a connection; the test sets
# the mode and then opens a fresh connection with reconnect(), so the
# fault always runs on a connection of its own. After each fault, a
# follow-up send() must succeed on a new, well-behaved connection.
#
# Each case is one assertion; its diagnostics list everything that was
# not as expected. The last lines summarize the whole matrix.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER IPPROTO_TCP TCP_NODELAY PF_INET SOCK_STREAM
	pack_sockaddr_in unpack_sockaddr_in inet_aton);
use Time::HiRes ();

use Net::QMTP;

# Under valgrind (.ci/valgrind sets NET_QMTP_VALGRIND) every ninth offset is
# enough to find memory errors; the full matrix runs in the normal suite.
# After send() returned its hash, error() is undef when every recipient
# got an answer of its own, and otherwise says what happened to the rest:
# the reason their deferrals give.
sub error_says_what_was_lost {
	my ($q) = @_;
	my ($lost) = grep { !$_->{received} } @{ $q->responses };
	my $want = $lost ? $lost->{text} =~ s/\Ano response received: //r : undef;
	return () if (defined $want ? $want : "\0undef") eq (defined $q->error ? $q->error : "\0undef");
	return 'error() ' . show($q->error) . ' after send() returned the results, not ' . show($want);
}

sub thin { !$ENV{NET_QMTP_VALGRIND} || $_[0] % 9 == 0 }
use lib 't/lib';
use Test::QMTPServer;

# A hang must fail the test, not block CI: the default action of SIGALRM
# terminates the process whatever the code under test is doing. Each case
# gets its own alarm; the whole file a deadline.
$SIG{ALRM} = 'DEFAULT';
$SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test: it must never come
my $DEADLINE = time + 900;
alarm 900;

my @RCPTS  = ('a@x', 'b@x', 'c@x');
my %PREFIX = (K => 'success: ', Z => 'deferral: ', D => 'failure: ');
my $FAST   = $ENV{NET_QMTP_VALGRIND} ? 15 : 3; # seconds a fault may take (Timeout is 10); valgrind slows both ends

my $TRIED         = 0;
my $UNEXPECTED    = 0;
my $FALSE_SUCCESS = 0;

sub fd_count {
	opendir my $dh, "/proc/$$/fd" or return undef;
	my $n = grep { /^\d+\z/ } readdir $dh;
	closedir $dh;
	return $n;
}

my $FDS_BEFORE = fd_count();

# ---------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------

# Runs one case. $code returns the list of what was not as expected (empty
# when all was); a die is a problem too. One assertion per case.
sub fault {
	my ($name, $code) = @_;
	alarm 30;
	my @problems;
	my $ok = eval { @problems = $code->(); 1 };
	push @problems, 'died: ' . (defined $@ && length $@ ? $@ : 'unknown error') unless $ok;
	my $left = $DEADLINE - time;
	alarm($left > 0 ? $left : 1);
	$TRIED++;
	$UNEXPECTED++ if @problems;
	ok(!@problems, $name) or diag join '', map { "    $_\n" } @problems;
	return !@problems;
}

sub show {
	my ($v) = @_;
	return 'undef' unless defined $v;
	return "$v" if ref $v;
	(my $s = $v) =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
	$s = substr($s, 0, 200) . '...' if length $s > 200;
	return "'$s'";
}

sub netstring { return length($_[0]) . ':' . $_[0] . ',' }

sub timed_send {
	my ($q) = @_;
	my $t0 = Time::HiRes::time();
	my $res = eval { $q->send };
	my $died = $@;
	return ($res, Time::HiRes::time() - $t0, $died);
}

sub envelope {
	my ($q, $message, $rcpts) = @_;
	$q->new_envelope;
	$q->new_message;
	$q->sender('s@x');
	$q->recipient($_) for @{ $rcpts || \@RCPTS };
	$q->message($message);
}

# Compares responses() (and the send() hash, if there is one) with $want:
# per recipient [code, text (string or qr//), received, per_package].
# A recipient that got a success although $want has no K for it is counted
# in $FALSE_SUCCESS as well.
sub check_results {
	my ($q, $res, $rcpts, $want) = @_;
	my @p;
	my $r = eval { $q->responses };
	return "responses() died: $@" if $@;
	return 'responses() is not an array reference: ' . show($r) unless ref $r eq 'ARRAY';
	push @p, sprintf('responses() has %d entries, want %d', scalar @$r, scalar @$want)
		if @$r != @$want;
	for my $i (0 .. $#$want) {
		my ($code, $text, $received, $per_package) = @{ $want->[$i] };
		my $g = $r->[$i] || {};
		my $tag = 'answer ' . ($i + 1) . " ($rcpts->[$i])";
		push @p, "$tag: recipient " . show($g->{recipient})
			unless defined $g->{recipient} && $g->{recipient} eq $rcpts->[$i];
		push @p, "$tag: code " . show($g->{code}) . ", want '$code'"
			unless defined $g->{code} && $g->{code} eq $code;
		if (ref $text) {
			push @p, "$tag: text " . show($g->{text}) . " does not match $text"
				unless defined $g->{text} && $g->{text} =~ $text;
		} else {
			push @p, "$tag: text " . show($g->{text}) . ', want ' . show($text)
				unless defined $g->{text} && $g->{text} eq $text;
		}
		push @p, "$tag: received " . show($g->{received}) . ", want $received"
			unless defined $g->{received} && $g->{received} == $received;
		push @p, "$tag: per_package " . show($g->{per_package}) . ", want $per_package"
			unless defined $g->{per_package} && $g->{per_package} == $per_package;
		my $response = $PREFIX{ $g->{code} // '' } // '?';
		$response .= $g->{text} // '';
		push @p, "$tag: response " . show($g->{response}) . ', want ' . show($response)
			unless defined $g->{response} && $g->{response} eq $response;
		if (ref $res eq 'HASH') {
			push @p, "$tag: send() hash value " . show($res->{ $rcpts->[$i] }) . ', want ' . show($response)
				unless defined $res->{ $rcpts->[$i] } && $res->{ $rcpts->[$i] } eq $response;
		}
		if ($code ne 'K'
			&& (($g->{code} // '') eq 'K' || (ref $res eq 'HASH' && ($res->{ $rcpts->[$i] } // '') =~ /^success: /)))
		{
			$FALSE_SUCCESS++;
			push @p, "$tag: a SUCCESS although no K answer covers it";
		}
	}
	if (ref $res eq 'HASH') {
		my %want_keys = map { $_ => 1 } @$rcpts;
		my @extra = grep { !$want_keys{$_} } keys %$res;
		push @p, 'send() hash has unknown keys: ' . join(' ', map { show($_) } @extra) if @extra;
	}
	return @p;
}

# ---------------------------------------------------------------------
# The scripted server
# ---------------------------------------------------------------------

# The test writes the mode (fields hex-encoded, so any bytes go through)
# before it opens the connection the mode is for; the server reads it
# when it accepts that connection.
my $CTRL = tempdir('qmtp33-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub set_mode {
	my @fields = @_;
	my $tmp = "$CTRL/mode.tmp";
	open my $fh, '>', $tmp or die "mode: $!";
	print {$fh} join("\t", map { unpack 'H*', $_ } @fields);
	close $fh or die "mode: $!";
	rename $tmp, "$CTRL/mode" or die "mode: $!";
}

sub get_mode {
	open my $fh, '<', "$CTRL/mode" or return ('well');
	local $/;
	my $data = <$fh>;
	close $fh;
	return map { pack 'H*', $_ } split /\t/, $data, -1;
}

sub touch {
	my ($file) = @_;
	open my $fh, '>', $file or die "$file: $!";
	close $fh;
}

# FIN: a plain close. RST: close with SO_LINGER 0 (as in t/30-faults.t).
sub close_conn {
	my ($c, $how) = @_;
	if ($how eq 'RST') {
		setsockopt($c->socket, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) or die "SO_LINGER: $!";
	}
	$c->close;
}

sub serve_well {
	my ($c) = @_;
	while ($c->read_package) {
		$c->answer_all('K', 'ok') or last;
	}
}

# Each mode: the script for a connection, called with the mode's fields.
my %SCRIPT = (
	well => \&serve_well,

	# Part 1: read the package, write these bytes in one write, close
	# at once (no waiting for the client's half-close).
	respond_close => sub {
		my ($c, $bytes, $how) = @_;
		$c->read_package or return;
		$c->write($bytes) if length $bytes;
		close_conn($c, $how);
	},

	# Part 2: once the package has begun, read exactly $k bytes of it,
	# then close (with unread bytes queued, Linux resets even on a plain
	# close).
	read_close => sub {
		my ($c, $k, $how) = @_;
		IO::Select->new($c->socket)->can_read(20) or return;
		$c->read_bytes($k) if $k > 0;
		close_conn($c, $how);
	},

	# Part 3: the answers in pieces, one write each, $delay seconds
	# apart (TCP_NODELAY: each piece its own segment); then the connection
	# carries on as a well-behaved one.
	pieces => sub {
		my ($c, $delay, @pieces) = @_;
		setsockopt($c->socket, IPPROTO_TCP, TCP_NODELAY, 1) or die "TCP_NODELAY: $!";
		$c->read_package or return;
		for my $i (0 .. $#pieces) {
			$c->sleep($delay) if $i;
			$c->write($pieces[$i]) or return;
		}
		serve_well($c);
	},

	# Part 4: read the package, write these bytes, wait for the client to
	# give up on the connection.
	malformed => sub {
		my ($c, $bytes) = @_;
		$c->read_package or return;
		$c->write($bytes);
		$c->wait_eof(10);
	},

	# Part 4: bytes right after accept, before any package; then a flag
	# for the test; then optionally a close.
	stray => sub {
		my ($c, $bytes, $then) = @_;
		$c->write($bytes);
		touch("$CTRL/stray-" . $c->index);
		$c->close if $then eq 'close';
		$c->wait_eof(10);
	},
);

my $SRV = Test::QMTPServer->new(
	rcvbuf   => 4096,    # part 2: a small window, so the client is still writing
	lifetime => 1000,
	script   => sub {
		my ($c, $n) = @_;
		my ($mode, @args) = get_mode();
		my $script = $SCRIPT{$mode} or die "unknown mode '$mode'";
		$script->($c, @args);
	},
);

# One loop's state: the object, and the index of the connection it opens next.
sub context {
	my (%opt) = @_;
	my $q = Net::QMTP->new('127.0.0.1:' . $SRV->port, Timeout => 10, DeferConnect => 1, %opt)
		or die "cannot create the client: $@";
	return { q => $q, next => $SRV->connections };
}

# A fresh connection for the next fault: set its mode, then reconnect().
sub fresh {
	my ($ctx, @mode) = @_;
	set_mode(@mode);
	my $q = $ctx->{q};
	$ctx->{conn} = $ctx->{next}++;
	return if eval { $q->reconnect };
	return 'reconnect() for the fault failed: ' . ($@ || $q->error // 'undef');
}

# After a fault: the next send() goes to a new, well-behaved connection
# (the object reconnects by itself) and succeeds.
sub follow_up {
	my ($ctx, $tag, %opt) = @_;
	my $rcpts = \@RCPTS;
	my $q = $ctx->{q};
	my @p;
	# The fault connection must be over first (else the follow-up could
	# race the server's close, which no client can avoid); a few ms more
	# for its FIN or RST to be delivered.
	unless ($opt{still_open}) {
		$SRV->wait_done($ctx->{conn}, 15)
			or push @p, "the fault's script (connection $ctx->{conn}) did not end";
		Time::HiRes::sleep(0.005);
	}
	set_mode('well');
	my $message = "follow-up after $tag\n";
	envelope($q, $message, $rcpts);
	my ($res, $t, $died) = timed_send($q);
	push @p, "follow-up send() died: $died" if $died;
	if (ref $res eq 'HASH') {
		my @bad = grep { ($res->{$_} // '') ne 'success: ok' } @$rcpts;
		push @p, 'follow-up send(): ' . join(', ', map { "$_ => " . show($res->{$_}) } @bad) if @bad;
	} else {
		push @p, 'follow-up send() returned ' . show($res) . ', error() ' . show($q->error);
	}
	push @p, 'error() after the follow-up: ' . show($q->error) if defined $q->error;
	my $idx = $ctx->{next}++;
	my @pk = $SRV->packages($idx);
	push @p, "the follow-up did not arrive alone on the new connection $idx"
		unless @pk == 1 && $pk[0]{message} eq $message;
	$ctx->{next} = $SRV->connections;    # resynchronize, whatever happened
	return @p;
}

# ---------------------------------------------------------------------
# 1. The server closes at every byte offset of the response stream
# ---------------------------------------------------------------------

my @STREAMS = (
	['short texts', ['Kok', 'Zwait', 'Dno way']],
	# 20-byte texts with bytes that look like netstring framing
	['20-byte texts', [
		'K' . substr("queued 12:34,5\0\r\n,:9" . ('.' x 20), 0, 20),
		'Z' . substr("try later: 1:x, 0:, " . ('.' x 20), 0, 20),
		'D' . substr("no such user\n3:Kok, " . ('.' x 20), 0, 20),
	]],
);

{
	# HalfCloseAfter 2: the pieces of part 3 must not look like a stall
	# even on a loaded machine (part 1's server closes at once anyway).
	my $ctx = context(HalfCloseAfter => 2);
	my $q = $ctx->{q};
	for my $how ('FIN', 'RST') {
		for my $s (@STREAMS) {
			my ($sname, $answers) = @$s;
			my $stream = join '', map { netstring($_) } @$answers;
			my @end;
			my $pos = 0;
			push @end, $pos += length netstring($_) for @$answers;
			for my $k (grep { thin($_) } 0 .. length $stream) {
				my $name = "1. $how after $k of " . length($stream) . " response bytes ($sname)";
				fault $name => sub {
					my @p = fresh($ctx, 'respond_close', substr($stream, 0, $k), $how);
					return @p if @p;
					my $message = "fault $how $sname k=$k\n";
					envelope($q, $message);
					my ($res, $t, $died) = timed_send($q);
					push @p, "send() died: $died" if $died;
					push @p, 'send() returned ' . show($res) . ', not a hash; error() ' . show($q->error)
						unless ref $res eq 'HASH';
					push @p, error_says_what_was_lost($q) if ref $res eq 'HASH';
					push @p, sprintf('send() took %.2f s', $t) if $t >= $FAST;
					my $mid = grep { $_ == $k } 0, @end;    # a cut between answers?
					my $why = $how eq 'FIN'
						? ($mid ? qr/\Ano response received: connection closed by the server/
						        : qr/\Ano response received: connection closed by the server.*(?:middle|cut off|incomplete)/)
						: qr/\Ano response received: .*(?:reset|failed|lost|closed)/i;
					my @want = map {
						$end[$_] <= $k
							? [substr($answers->[$_], 0, 1), substr($answers->[$_], 1), 1, 0]
							: ['Z', $why, 0, 0]
					} 0 .. $#$answers;
					push @p, check_results($q, $res, \@RCPTS, \@want);
					my @pk = $SRV->packages($ctx->{conn});
					push @p, "the fault package did not arrive alone on connection $ctx->{conn}"
						unless @pk == 1 && $pk[0]{message} eq $message;
					push @p, follow_up($ctx, $name);
					return @p;
				};
			}
		}
	}

	# -----------------------------------------------------------------
	# 3. Answers in pieces, 10 recipients (3 dribbled: t/20-wire.t)
	# -----------------------------------------------------------------

	my @rcpts10 = map { "r$_\@x" } 0 .. 9;
	my @answers10 = (
		'Kok 0', 'Z1:x,', "D\0two\r\n", 'K3:K33,', 'Z ', 'D,,,', 'K0:,', "Z7\n8", 'D#5.1.1', 'K' . ('9' x 30),
	);
	my $stream10 = join '', map { netstring($_) } @answers10;
	my @want10 = map { [substr($_, 0, 1), substr($_, 1), 1, 0] } @answers10;
	for my $p (
		['10 answers dribbled a byte at a time', 0.003, split //, $stream10],
		['10 answers, one write each', 0.02, map { netstring($_) } @answers10],
		['10 answers in one write', 0, $stream10],
	) {
		my ($name, $delay, @pieces) = @$p;
		fault "3. $name" => sub {
			my @p = fresh($ctx, 'pieces', $delay, @pieces);
			return @p if @p;
			envelope($q, "ten\n", \@rcpts10);
			my ($res, $t, $died) = timed_send($q);
			push @p, "send() died: $died" if $died;
			push @p, 'send() returned ' . show($res) . ', error() ' . show($q->error) unless ref $res eq 'HASH';
			push @p, 'error() ' . show($q->error) if defined $q->error;
			push @p, check_results($q, $res, \@rcpts10, \@want10);
			# No half-close happened: the same connection carries the next.
			my $message = "same connection after $name\n";
			envelope($q, $message, \@rcpts10);
			my $res2 = eval { $q->send };
			push @p, 'the next send() failed: ' . show($q->error)
				unless ref $res2 eq 'HASH' && !grep { $_ ne 'success: ok' } values %$res2;
			my @pk = $SRV->packages($ctx->{conn});
			push @p, "the next package did not go on the same connection $ctx->{conn}"
				unless @pk == 2 && $pk[1]{message} eq $message;
			push @p, "the client half-closed connection $ctx->{conn}" if $SRV->client_closed($ctx->{conn});
			$ctx->{next} = $SRV->connections;
			return @p;
		};
	}
	undef $q;
	delete $ctx->{q};
}

# ---------------------------------------------------------------------
# 2. The server closes at every byte offset of the package
# ---------------------------------------------------------------------

# The client's send buffer grows up to tcp_wmem's maximum: a message larger
# than that (plus a margin) cannot be all in the kernel when the server
# closes early, so both outcomes occur.
sub wmem_max {
	my $wmem = 4 * 1024 * 1024;
	if (open my $fh, '<', '/proc/sys/net/ipv4/tcp_wmem') {
		my @v = split ' ', scalar <$fh>;
		$wmem = $v[2] if @v == 3 && $v[2] =~ /^\d+\z/;
	}
	return $wmem;
}

# "0-64, 100, 2000-2003" from a sorted list of numbers.
sub ranges {
	my @n = @_;
	my @out;
	while (@n) {
		my $from = my $to = shift @n;
		$to = shift @n while @n && $n[0] == $to + 1;
		push @out, $from == $to ? $from : "$from-$to";
	}
	return @out ? join(', ', @out) : 'none';
}

my %OUTCOME;
for my $size ([ '300 kB', 300_000 ], [ 'larger than the kernel buffers', wmem_max() + 2 * 1024 * 1024 ]) {
	my ($sname, $bytes) = @$size;
	my $ctx = context();
	my $q = $ctx->{q};
	my $line = "a line of the message to be cut off somewhere\n";
	my $msg = substr($line x (int($bytes / length $line) + 1), 0, $bytes);
	my $package = netstring("\n" . $msg) . netstring('s@x') . netstring(join '', map { netstring($_) } @RCPTS);
	my $len = length $package;
	my %k = map { $_ => 1 } 0 .. 64, $len - 64 .. $len;
	$k{ int(65 + ($len - 130) * $_ / 51) } = 1 for 1 .. 50;
	my @offsets = grep { thin($_) } sort { $a <=> $b } keys %k;
	for my $how ('FIN', 'RST') {
		my $out = $OUTCOME{"$sname, $how"} = { undef => [], deferrals => [], offsets => scalar @offsets };
		for my $k (@offsets) {
			my $name = "2. $how after reading $k of $len package bytes ($sname)";
			fault $name => sub {
				my @p = fresh($ctx, 'read_close', $k, $how);
				return @p if @p;
				envelope($q, $msg);
				my ($res, $t, $died) = timed_send($q);
				push @p, "send() died: $died" if $died;
				push @p, sprintf('send() took %.2f s', $t) if $t >= $FAST;
				if (!defined $res) {
					push @{ $out->{undef} }, $k;
					push @p, 'send() returned undef, but error() ' . show($q->error)
						. ' does not say the connection was lost, closed or reset'
						unless ($q->error // '') =~ /connection (?:lost|closed|failed)|reset|broken pipe/i;
					# Made-up deferrals, as after any failed package.
					push @p, check_results($q, $res, \@RCPTS, [ map { ['Z', qr/./s, 0, 0] } @RCPTS ]);
				} elsif (ref $res eq 'HASH') {
					push @{ $out->{deferrals} }, $k;
					push @p, error_says_what_was_lost($q);
					push @p, check_results($q, $res, \@RCPTS,
						[ map { ['Z', qr/\Ano response received: /, 0, 0] } @RCPTS ]);
				} else {
					push @p, 'send() returned ' . show($res) . ', neither undef nor a hash';
				}
				push @p, follow_up($ctx, $name);
				my $rec = $SRV->dir . "/conn-$ctx->{conn}.in";
				my $got = -s $rec;
				push @p, 'the server read ' . show($got) . " bytes, not $k" unless defined $got && $got == $k;
				if ($k == $len) {
					my @pk = $SRV->packages($ctx->{conn});
					push @p, 'the server did not get the complete package' unless @pk == 1;
				}
				truncate $rec, 0;    # spare the disk: up to 2 x 130 x 6 MiB otherwise
				return @p;
			};
		}
	}
	undef $q;
	delete $ctx->{q};
}
for my $what (sort keys %OUTCOME) {
	my $o = $OUTCOME{$what};
	diag sprintf "2. %s: %d offsets: send() returned undef %d times (k = %s), a hash of deferrals %d times",
		$what, $o->{offsets}, scalar @{ $o->{undef} }, ranges(@{ $o->{undef} }), scalar @{ $o->{deferrals} };
}

# ---------------------------------------------------------------------
# 4. Malformed answers, as answer 1, 2 and 3
# ---------------------------------------------------------------------

my $MAXRESP = 16;
my @MALFORMED = (
	# [name, bytes of the bad answer, answers before it (default: Kfirst, Dsecond)]
	['empty response 0:,',              '0:,'],
	['status byte X',                   '3:Xno,'],
	['status byte lowercase k',         '3:kok,'],
	['status byte NUL',                 "3:\0ok,"],
	['missing ":" (3Kok,)',             '3Kok,'],
	['missing "," (3:Kokx)',            '3:Kokx'],
	['empty length (:Kok,)',            ':Kok,'],
	['a lone comma',                    ','],
	['non-digit length (a:Kok,)',       'a:Kok,'],
	['non-digit in the length (3a:)',   '3a:Kok,'],
	['plus sign (+3:Kok,)',             '+3:Kok,'],
	['minus sign (-3:Kok,)',            '-3:Kok,'],
	['space before the length',         ' 3:Kok,'],
	['space after the length',          '3 :Kok,'],
	['leading zero (03:Kok,)',          '03:Kok,'],
	['leading zeros (0003:Kok,)',       '0003:Kok,'],
	['10-digit length',                 '1234567890:Kok,'],
	['10-digit length, zeros first',    '0000000003:Kok,'],
	['20-digit length',                 '99999999999999999999:Kok,'],
	["length over MaxResponse ($MAXRESP)", ($MAXRESP + 1) . ':K' . ('c' x $MAXRESP) . ',',
		['K' . ('a' x ($MAXRESP - 1)), 'D' . ('b' x ($MAXRESP - 1))]],
	['9-digit length, nothing after it', '999999999:K'],
);

{
	my $ctx = context(MaxResponse => $MAXRESP);
	my $q = $ctx->{q};
	my $violation = qr/\Ano response received: protocol violation/;
	for my $m (@MALFORMED) {
		my ($mname, $bad, $before) = @$m;
		$before ||= ['Kfirst', 'Dsecond'];
		for my $pos (1 .. 3) {
			my @good = @$before[0 .. $pos - 2];
			my $name = "4. $mname as answer $pos";
			fault $name => sub {
				my @p = fresh($ctx, 'malformed', join('', map { netstring($_) } @good) . $bad);
				return @p if @p;
				envelope($q, "malformed $mname at $pos\n");
				my ($res, $t, $died) = timed_send($q);
				push @p, "send() died: $died" if $died;
				push @p, 'send() returned ' . show($res) . ', not a hash; error() ' . show($q->error)
					unless ref $res eq 'HASH';
				push @p, error_says_what_was_lost($q) if ref $res eq 'HASH';
				push @p, sprintf('send() took %.2f s', $t) if $t >= $FAST;
				my @want = map { [substr($_, 0, 1), substr($_, 1), 1, 0] } @good;
				push @want, ['Z', $violation, 0, 0] while @want < 3;
				push @p, check_results($q, $res, \@RCPTS, \@want);
				push @p, "the client did not close connection $ctx->{conn}"
					unless $SRV->wait_closed($ctx->{conn}, 5);
				push @p, follow_up($ctx, $name);
				return @p;
			};
		}
	}

	# Bytes before any package: the server writes them right after
	# accept. Once they are in (the flag, plus time for a segment sent
	# again), the next send() must see a spoilt idle connection and use a
	# new one; nothing is taken as an answer.
	for my $s (
		['a K answer', '3:Kok,', 'wait'],
		['a Z answer', '3:Zno,', 'wait'],
		['half an answer', '5:Kok', 'wait'],
		['garbage', "hello\r\n", 'wait'],
		['a K answer, then a close', '3:Kok,', 'close'],
	) {
		my ($sname, $bytes, $then) = @$s;
		my $name = "4. $sname before any package";
		fault $name => sub {
			my @p = fresh($ctx, 'stray', $bytes, $then);
			return @p if @p;
			my $flag = "$CTRL/stray-$ctx->{conn}";
			my $deadline = Time::HiRes::time() + 10;
			Time::HiRes::sleep(0.01) while !-e $flag && Time::HiRes::time() < $deadline;
			return "the server did not write the stray bytes" unless -e $flag;
			Time::HiRes::sleep(0.3);
			push @p, follow_up($ctx, $name, still_open => 1);
			push @p, "the client did not close connection $ctx->{conn}"
				unless $then eq 'close' || $SRV->wait_closed($ctx->{conn}, 5);
			push @p, 'a package was sent on the connection with stray bytes'
				if length $SRV->received($ctx->{conn});
			return @p;
		};
	}
	undef $q;
	delete $ctx->{q};
}

# ---------------------------------------------------------------------
# 5. The automatic reconnect in send() meets an address that never
#    completes the handshake (the full-backlog trick of t/31: loopback only)
# ---------------------------------------------------------------------

SKIP: {
	skip 'a full listen backlog drops SYNs only on Linux', 2 unless $^O eq 'linux';
	my $ctx = context(ConnectTimeout => 0.5);
	my $q = $ctx->{q};
	socket(my $l, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
	bind($l, pack_sockaddr_in(0, inet_aton('127.0.0.1'))) or die "bind: $!";
	listen($l, 0) or die "listen: $!";
	my ($port) = unpack_sockaddr_in(getsockname($l));
	my ($accepted, $filler);

	fault '5. send() reconnects to an address that never answers: ConnectTimeout' => sub {
		my @p;
		$q->server("127.0.0.1:$port");
		$q->reconnect or return 'reconnect() to the backlog listener: ' . show($q->error);
		accept($accepted, $l) or return "accept: $!";
		# The accept queue is full from now on: later SYNs are dropped.
		$filler = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 5)
			or return "filler connect: $@";
		close $accepted;    # the server closes the idle connection
		Time::HiRes::sleep(0.05);
		envelope($q, "to nowhere\n");
		my ($res, $t, $died) = timed_send($q);
		push @p, "send() died: $died" if $died;
		push @p, 'send() returned ' . show($res) . ', not undef' if defined $res;
		push @p, 'error() ' . show($q->error) . ' does not say the connect timed out'
			unless ($q->error // '') =~ /timed out/;
		push @p, sprintf('send() took %.2f s, ConnectTimeout is 0.5 s', $t) if $t > 2 || $t < 0.4;
		note 'error: ' . show($q->error);
		return @p;
	};

	fault '5. after a failed automatic reconnect, the next send() reconnects by itself' => sub {
		my @p;
		$q->server('127.0.0.1:' . $SRV->port);
		set_mode('well');
		envelope($q, "after the connect timeout\n");
		my ($res, $t, $died) = timed_send($q);
		push @p, "send() died: $died" if $died;
		if (ref $res ne 'HASH') {
			# The user never called disconnect(): send() documents "not
			# connected" only after disconnect() or DeferConnect.
			push @p, 'send() returned ' . show($res) . ', error() ' . show($q->error)
				. ': the object stays unusable until an explicit reconnect()';
			$q->reconnect or push @p, 'even reconnect() failed: ' . show($q->error);
			$res = eval { $q->send };
		}
		push @p, 'send() to the working server: ' . show($res) . ', error() ' . show($q->error)
			unless ref $res eq 'HASH' && !grep { $_ ne 'success: ok' } values %$res;
		$ctx->{next} = $SRV->connections;
		return @p;
	};
	close $filler if $filler;
	close $l;
	undef $q;
	delete $ctx->{q};
}

# ---------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------

alarm 60;
$SRV->stop;
undef $SRV;
is($FALSE_SUCCESS, 0, 'never a success for a recipient no K answer covers, across the matrix');
SKIP: {
	skip 'no /proc/PID/fd on this system', 1 unless defined $FDS_BEFORE;
	is(fd_count(), $FDS_BEFORE, 'no descriptor leaked over the whole matrix');
}
diag "fault matrix: $TRIED faults tried, $UNEXPECTED unexpected outcomes";
is($UNEXPECTED, 0, "fault matrix: $TRIED faults tried, $UNEXPECTED unexpected outcomes");

alarm 0;
done_testing();
