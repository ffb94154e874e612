#!perl
# A randomized oracle test (issue 11, "Proof that the class is gone"):
# send() and send_many() against the scripted server in t/lib, with plain,
# UTF-8-flagged (downgradable), read-only, overloaded and tied inputs (tied
# scalars, recipient arrays and whole job hashes), overloads and tie FETCHes
# that do nasty things to other jobs (utf8::upgrade of another job's
# message, recipients pushed onto another job, keys deleted, a job's hash
# replaced), and signal handlers (Time::HiRes::ualarm with SIGALRM, or
# SIGUSR1 from a forked child) that fire during the send and do the same.
# The server answers once per recipient or once per package (or changes
# between connections), and sometimes closes, stalls, cuts an answer, sends
# garbage or one answer too many; the client declares Answers => 'auto',
# 'recipient' or 'package' (the last only to a once-per-package server).
#
# Checked on every iteration, against what the server logged it sent:
#  1  a recipient is "success: ..." (send()'s hash, responses() code K,
#     send_many's result and responses) only if the server sent that K for
#     that recipient's own package: for that recipient's position, or as
#     the one answer to the package, and then, for the other recipients,
#     only when the client declared Answers => 'package' or the server saw
#     the client's half-close (EOF) and hung up after that one answer.
#     1b is the same for "failure: ..." (a D given to the wrong recipient).
#     count: no answer for a recipient that its package does not have
#     (recipients appended to a job's array during the send).
#  2  every complete package the server received is exactly a package the
#     caller's inputs describe (values as they were before the send, or as
#     the test's own code deliberately changed them).
#  3  the call returns within what its timeouts allow.
#  4  the caller's inputs are unchanged by the send (value, UTF-8 flag,
#     read-only flag, identity), except what the test's own code changed.
#  die: a call may die only when the test's own code did something
#     disruptive during it (an overload, a tie or a handler that changed an
#     input or died); tied inputs must simply work.
#
# Seeded: the seed is printed; NET_QMTP_SEED=N replays a run,
# NET_QMTP_ITER=i[,j...] runs only those iterations of it. 150 iterations
# by default (bounded to about 50 s), NET_QMTP_SOAK=1 (as in CI) for 600, within 300 s (or
# NET_QMTP_ITERATIONS=n, NET_QMTP_BUDGET=seconds). NET_QMTP_ORACLE_DIAG=n
# caps the violation details printed per iteration (default 6);
# NET_QMTP_ORACLE_TRACE=1 prints each call's inputs and caller code.
#
# Timing: a deferral is always acceptable where a success was possible;
# only a success (or failure) that was never earned, bytes that were never
# given, an input changed, a die without cause or a call past its bound
# fail the test.

use strict;
use warnings;

# Replays must see hashes in the same order (the client reads job hashes,
# the test's tied hashes answer in key order): the hash seed comes from the
# run's seed, set before perl starts, so the test runs itself again once.
BEGIN {
	if (!defined $ENV{NET_QMTP_SEED} || $ENV{NET_QMTP_SEED} !~ /\A\d+\z/) {
		$ENV{NET_QMTP_SEED} = (int(time() * 1000) ^ ($$ << 8)) % 2_000_000_000;
	}
	if (!$^C && !defined $ENV{PERL_HASH_SEED} && !$ENV{NET_QMTP_ORACLE_REEXEC}) {
		$ENV{PERL_HASH_SEED} = $ENV{NET_QMTP_SEED} % 4294967291;
		$ENV{PERL_PERTURB_KEYS} = 0;
		$ENV{NET_QMTP_ORACLE_REEXEC} = 1;
		exec $^X, (map { "-I$_" } grep { !ref } @INC), $0, @ARGV;
		warn "t/62-oracle.t: cannot run itself again ($!); hash order is not replayable\n";
	}
}

use Test::More;
use Time::HiRes ();
use POSIX ();
use Scalar::Util qw(refaddr);
use File::Temp qw(tempdir);
use File::Path ();
use Storable ();
use Config;

plan skip_all => 'needs fork' unless $Config{d_fork};

my %SIGNAME;
@SIGNAME{ split ' ', $Config{sig_num} } = split ' ', $Config{sig_name};

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;

$SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test: it must never come

# ---------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------

my $SOAK = $ENV{NET_QMTP_SOAK};
my $SEED = $ENV{NET_QMTP_SEED} + 0;
my $ITERATIONS = $ENV{NET_QMTP_ITERATIONS} || ($SOAK ? 600 : 150);
my $BUDGET = $ENV{NET_QMTP_BUDGET} || ($SOAK ? 300 : 50);
my @ONLY = grep { /\A\d+\z/ } split /,/, ($ENV{NET_QMTP_ITER} || '');
my $TRACE = $ENV{NET_QMTP_ORACLE_TRACE};
my $MAXDIAG = defined $ENV{NET_QMTP_ORACLE_DIAG} ? $ENV{NET_QMTP_ORACLE_DIAG} : 6;

diag("t/62-oracle.t seed $SEED (replay: NET_QMTP_SEED=$SEED prove -b t/62-oracle.t;"
	. " one iteration: NET_QMTP_SEED=$SEED NET_QMTP_ITER=i)");

my $TMP = tempdir('qmtp62-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my %ENC = (unix => "\012", dos => "\015");

# Is the Answers option there (it is being added)? Without it the client
# answers as 'auto' does, and the oracle judges it so.
my $ANSWERS_OK = do {
	my @w;
	local $SIG{__WARN__} = sub { push @w, $_[0] };
	my $o = eval { Net::QMTP->new('127.0.0.1', DeferConnect => 1, Answers => 'auto') };
	$o && !grep { /unknown option/ } @w;
};
note($ANSWERS_OK ? 'Answers option: supported' : "Answers option: not supported here, judged as 'auto'");

# ---------------------------------------------------------------------
# Caller code that misbehaves: overloads, ties, signal handlers
# ---------------------------------------------------------------------

our $ARMED = 0;     # the test's nasty code acts only during a call
our $IN_CALL = 0;
our $CUR;           # the call under way: its jobs, object and a record of what was done
our $IN_FIRE = 0;
our @JUNK;          # allocations that reuse freed buffers, kept until the call ends
our %HOOKS;         # tie object address => hooks

{
	package T62::Str;    # an object whose string form is an input
	use overload
		'""' => sub { main::fire($_[0]{hooks}); $_[0]{val} },
		'bool' => sub { 1 },
		fallback => 1;
	sub new { my ($class, $val, $hooks) = @_; bless { val => $val, hooks => $hooks }, $class }
}
{
	package T62::TScalar;
	sub TIESCALAR { my ($class, $val, $hooks) = @_; bless { val => $val, hooks => $hooks, fetches => 0 }, $class }
	sub FETCH { my $s = shift; $s->{fetches}++; main::fire($s->{hooks}); $s->{val} }
	sub STORE { $_[0]{val} = $_[1] }
}
{
	package T62::TArray;
	require Tie::Array;
	our @ISA = ('Tie::StdArray');    # the object is the array of values
	sub FETCH { main::fire($HOOKS{ Scalar::Util::refaddr($_[0]) }); $_[0]->[ $_[1] ] }
}
{
	package T62::THash;
	require Tie::Hash;
	our @ISA = ('Tie::StdHash');     # the object is the hash of values
	sub FETCH { main::fire($HOOKS{ Scalar::Util::refaddr($_[0]) }); $_[0]->{ $_[1] } }
}

sub fire {
	my ($hooks) = @_;
	return unless $ARMED && $CUR && $hooks && @$hooks && !$IN_FIRE;
	local $IN_FIRE = 1;
	for my $h (@$hooks) {
		next unless $h->{times} > 0;
		$h->{times}--;
		do_op($h);
	}
}

sub on_signal {
	return unless $ARMED && $CUR && $CUR->{sig};
	$CUR->{signals}++;
	fire($CUR->{sig}{ops});
}
$SIG{ALRM} = \&on_signal;
$SIG{USR1} = \&on_signal;
$SIG{USR2} = sub { die "t62 watchdog: the call ran past its time bound\n" if $IN_CALL };

# The storage of a job hash, without running its FETCH.
sub job_store {
	my ($h) = @_;
	my $t = tied %$h;
	return $t ? $t : $h;
}

sub plain_string_slot {
	my ($store, $key) = @_;
	return undef unless exists $store->{$key};
	my $r = \$store->{$key};
	if (my $t = tied $$r) {
		return \$t->{val} if defined $t->{val} && !ref $t->{val};
		return undef;
	}
	return undef unless defined $$r && !ref $$r;
	return $r;
}

sub note_event {
	my ($what) = @_;
	push @{ $CUR->{events} }, $what;
}

# One nasty action, on a job of the call under way (send_many) or on the
# object (send).
sub do_op {
	my ($h) = @_;
	my $op = $h->{op};
	my $cur = $CUR;
	if ($op eq 'peek') {
		note_event('peek');
		eval { $cur->{q}->responses; $cur->{q}->error; 1 };
		return;
	}
	if ($op eq 'die') {
		$cur->{disrupted} = 1;
		note_event('die');
		die "t62: the caller's code dies on purpose\n";
	}
	if ($op =~ /_self\z/) {
		my $q = $cur->{q};
		$cur->{disrupted} = 1;
		note_event($op);
		if ($op eq 'upgrade_self') {
			my $m = $q->{MESSAGE};
			if (defined $m && !ref $m) {
				utf8::upgrade($q->{MESSAGE});
				push @JUNK, map { 'Z' x length $m } 1 .. 4;
			}
		} elsif ($op eq 'push_self') {
			push @{ $q->{RECIPIENTS} }, $h->{name};
			push @{ $cur->{pushes}{0} }, $h->{name};
		} elsif ($op eq 'replace_self') {
			$q->{RECIPIENTS} = [ @{ $h->{rcpts} } ];
			push @{ $cur->{replaced}{0} }, { rcpts => $h->{rcpts} };
		} elsif ($op eq 'message_self') {
			$q->message('more');    # dies while the message is held
			push @{ $cur->{replaced}{0} }, { append => 'more' };
		}
		return;
	}
	my $k = $h->{job};
	my $job = $cur->{jobs}[$k] or return;
	note_event("$op job " . ($k + 1));
	if ($op eq 'upgrade') {
		my $r = plain_string_slot(job_store($job), 'message') or return;
		my $len = length $$r;
		$cur->{disrupted} = 1;
		utf8::upgrade($$r);
		# Reuse what the upgrade freed, so that bytes still read from the
		# old buffer are visibly wrong.
		push @JUNK, map { 'Z' x $len } 1 .. 6;
		$cur->{touched}{"$k/message"} = 1;
	} elsif ($op eq 'push') {
		my $store = job_store($job);
		my $rc = $store->{recipients};
		return unless ref $rc eq 'ARRAY';
		$cur->{disrupted} = 1;
		push @$rc, $h->{name};
		push @{ $cur->{pushes}{$k} }, $h->{name};
		$cur->{touched}{"$k/recipients"} = 1;
	} elsif ($op eq 'delete') {
		$cur->{disrupted} = 1;
		delete $job->{ $h->{key} };
		$cur->{touched}{"$k/*"} = 1;
	} elsif ($op eq 'replace') {
		$cur->{disrupted} = 1;
		%$job = (sender => $h->{new}{sender}, recipients => [ @{ $h->{new}{rcpts} } ], message => $h->{new}{message});
		push @{ $cur->{replaced}{$k} }, $h->{new};
		$cur->{touched}{"$k/*"} = 1;
	} elsif ($op eq 'replace_elem') {
		$cur->{disrupted} = 1;
		$cur->{jobs_array}[$k] = { sender => $h->{new}{sender}, recipients => [ @{ $h->{new}{rcpts} } ],
			message => $h->{new}{message} };
		push @{ $cur->{replaced}{$k} }, $h->{new};
		$cur->{touched}{array} = 1;
	}
}

# ---------------------------------------------------------------------
# Helper processes: the signalling child and the watchdog
# ---------------------------------------------------------------------

sub close_fds {
	opendir my $d, '/proc/self/fd' or return;
	my @fds = grep { /\A\d+\z/ && $_ > 2 } readdir $d;
	closedir $d;
	POSIX::close($_) for @fds;
}

sub signal_child {
	my ($delay, $count, $gap) = @_;
	my $parent = $$;
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	return $pid if $pid;
	close_fds();    # a copy of the client's socket would hide its close from the server
	Time::HiRes::sleep($delay);
	for (1 .. $count) {
		kill 'USR1', $parent or last;
		Time::HiRes::sleep($gap);
	}
	POSIX::_exit(0);
}

my $HEARTBEAT = "$TMP/heartbeat";

sub heartbeat {
	my ($secs, $label) = @_;
	open my $fh, '>', "$HEARTBEAT.$$" or return;
	print {$fh} (Time::HiRes::time() + $secs) . "\t$$\t$label";
	close $fh;
	rename "$HEARTBEAT.$$", $HEARTBEAT;
}

# Each iteration runs in a child process of its own (a crash of the client
# is then a finding, not the end of the run). A call past its deadline
# gets SIGUSR2 (the handler dies, if the client runs handlers while it
# waits); a process still stuck 10 s later is killed, and its iteration
# reported as hung.
sub start_watchdog {
	my $parent = $$;
	heartbeat(600, 'start');
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	return $pid if $pid;
	close_fds();
	my ($nudged, $at) = ('', 0);
	while (1) {
		POSIX::_exit(0) if getppid() != $parent;
		Time::HiRes::sleep(0.1);
		open my $fh, '<', $HEARTBEAT or next;
		my $line = <$fh>;
		close $fh;
		next unless defined $line;
		my ($deadline, $who, $label) = split /\t/, $line, 3;
		next unless $deadline && $who && Time::HiRes::time() > $deadline;
		if ($nudged ne "$deadline $who") {
			kill 'USR2', $who;
			($nudged, $at) = ("$deadline $who", Time::HiRes::time());
		} elsif (Time::HiRes::time() > $at + 10) {
			print STDERR "# t/62-oracle.t watchdog: $label hung for good (seed $SEED); killing process $who\n";
			kill 'KILL', $who;
			if ($who == $parent) {
				POSIX::_exit(1);
			}
			$at = Time::HiRes::time() + 1e9;
		}
	}
}

# ---------------------------------------------------------------------
# Random plans (all randomness is drawn here, from the iteration's seed)
# ---------------------------------------------------------------------

sub pick { return $_[ int rand @_ ] }
sub chance { return rand() < $_[0] }

sub weighted {
	my %w = @_;
	my $total = 0;
	$total += $_ for values %w;
	my $r = rand $total;
	for my $k (sort keys %w) {
		return $k if ($r -= $w{$k}) < 0;
	}
	return (sort keys %w)[0];
}

sub conn_plan {
	my ($kind, $p, $n) = @_;
	my %c = (
		kind       => $kind,
		seed       => int rand 2**31,
		delay_p    => chance(0.35) ? 0.6 : 0,
		split      => chance(0.2),
		kp         => pick(1, 0.9, 0.75),
		odd        => chance(0.15),
		slow_start => $p->{big} ? 0.1 : 0,
		at         => 1 + int rand 3,
		k          => int rand 3,
		bytes      => 1 + int rand 24,
		garbage    => pick('3:Xno,', '0:,', 'oops', "2:K\n", '12345678901:', '4:Kok;'),
	);
	my @faults = $kind eq 'rcpt'
		? qw(close_after stall stall_rest garbage cut extra slow midpkg)
		: qw(close_now refuse stall garbage cut extra slow midpkg);
	$c{fault} = $n < 4 && chance(0.45) ? pick(@faults) : 'none';
	return \%c;
}

my @FORMS = (plain => 30, utf8 => 18, ro_utf8 => 7, ro => 4, overload => 10, overload_utf8 => 6, tied => 12);

sub value_form {
	my ($p, $in_tied_container) = @_;
	my $f = weighted(@FORMS);
	$f = 'utf8' if $f eq 'tied' && ($in_tied_container || !$p->{ties});
	$f =~ s/^ro_?// if $in_tied_container && $f =~ /^ro/;
	$f = 'plain' if $f eq '';
	return $f;
}

sub body {
	my ($hi) = @_;
	my @pieces = ("line\n", "\n", "x" x 70 . "\n", "\0", "tab\tand\r\n", "end");
	push @pieces, "caf\xe9\n", "\xff\xfe\xe9\xe8", "na\xefve \xa0\n" if $hi;
	return join '', map { pick(@pieces) } 1 .. int rand 7;
}

sub make_job {
	my ($p, $ci, $j, $type) = @_;
	my $tag = "it$p->{iter}.c$ci.j$j";
	my $hi = chance(0.7);
	my %s = (tag => $tag);
	$s{sender} = chance(0.1) ? '' : $hi && chance(0.3) ? "s\xe9.$tag\@x" : "s.$tag\@x";
	my $nr = weighted(1 => 35, 2 => 35, 3 => 20, 4 => 10);
	$s{rcpts} = [ map { ($hi && chance(0.2) ? "r\xe8$_" : "r$_") . ".$tag\@x" } 1 .. $nr ];
	$s{rcpts}[-1] = $s{rcpts}[0] if $nr > 1 && chance(0.15);
	$s{message} = "X-Oracle: $tag\n" . body($hi);
	$s{message} = '' if length $s{sender} && chance(0.05);
	if ($p->{big} && $j == 0) {
		$s{message} .= ("\xe9" x 1000 . "\n") x (1000 + int rand 1000);
	}
	$s{enc} = $type eq 'send_many' && chance(0.3) ? pick('unix', 'dos') : undef;
	$s{hash_tied} = $type eq 'send_many' && $p->{ties} && chance(0.25);
	$s{rcpts_tied} = $type eq 'send_many' && $p->{ties} && chance(0.3);
	$s{forms}{sender} = value_form($p, $s{hash_tied});
	$s{forms}{message} = value_form($p, $s{hash_tied});
	$s{forms}{enc} = value_form($p, $s{hash_tied}) if defined $s{enc};
	$s{forms}{rcpts} = [ map { value_form($p, $s{hash_tied} || $s{rcpts_tied}) } 1 .. $nr ];
	if ($type eq 'send') {
		# The accessors copy their arguments: a tied one is read at once.
		$s{forms}{$_} =~ s/^ro$/plain/ for qw(sender message);
	}
	return \%s;
}

my $NAME = 0;

sub make_op {
	my ($p, $call, $from_signal) = @_;
	my @jobs = @{ $call->{jobs} };
	my $nj = @jobs;
	my $tag = "it$p->{iter}.c$call->{idx}";
	my %op = (times => 1);
	if ($call->{type} eq 'send') {
		$op{op} = weighted(upgrade_self => 40, push_self => 30, replace_self => 10, peek => 10,
			message_self => 5, die => 5);
		$op{name} = 'never' . ++$NAME . ".$tag\@x";
		$op{rcpts} = [ "n1.$tag\@x", "n2.$tag\@x" ];
		$op{times} = 2 if $op{op} eq 'push_self' && chance(0.3);
		return \%op;
	}
	$op{op} = weighted(upgrade => 42, push => 25, delete => 8, replace => 8, replace_elem => 5,
		peek => 7, die => 5);
	$op{job} = int rand $nj;
	$op{name} = 'never' . ++$NAME . ".$tag.j$op{job}\@x";
	$op{key} = pick('sender', 'message', 'recipients');
	$op{times} = 2 if $op{op} eq 'push' && chance(0.3);
	my $jt = "$tag.j$op{job}";
	$op{new} = { sender => "new.$jt\@x", rcpts => [ "new1.$jt\@x", "new2.$jt\@x" ],
		message => "X-Oracle: $jt\nreplaced\n" };
	return \%op;
}

sub make_call {
	my ($p, $ci) = @_;
	my %c = (idx => $ci, type => chance(0.4) ? 'send' : 'send_many');
	my $nj = $c{type} eq 'send' ? 1 : 1 + int rand 5;
	$c{jobs} = [ map { make_job($p, $ci, $_, $c{type}) } 0 .. $nj - 1 ];
	$c{aref} = chance(0.5);
	$c{enc} = pick('unix', 'dos') if chance(0.3);
	# Nasty hooks on some overloaded or tied inputs.
	for my $s (@{ $c{jobs} }) {
		for my $f (qw(sender message enc)) {
			next unless defined $s->{forms}{$f} && $s->{forms}{$f} =~ /^(?:overload|tied)/;
			next if $c{type} eq 'send' && $s->{forms}{$f} eq 'tied';
			$s->{hooks}{$f} = [ make_op($p, \%c) ] if chance(0.4);
		}
		for my $k (0 .. $#{ $s->{rcpts} }) {
			next unless $s->{forms}{rcpts}[$k] =~ /^(?:overload|tied)/;
			next if $c{type} eq 'send' && $s->{forms}{rcpts}[$k] eq 'tied';
			$s->{hooks}{rcpt}{$k} = [ make_op($p, \%c) ] if chance(0.4);
		}
		$s->{hooks}{hash} = [ make_op($p, \%c) ] if $s->{hash_tied} && chance(0.4);
		$s->{hooks}{array} = [ make_op($p, \%c) ] if $s->{rcpts_tied} && chance(0.4);
	}
	if (chance(0.4)) {
		my $r = rand;
		$c{sig} = {
			how      => chance(0.6) ? 'ualarm' : 'child',
			delay    => $r < 0.35 ? 0.0005 + rand 0.003 : $r < 0.75 ? 0.003 + rand 0.03 : 0.03 + rand 0.12,
			interval => chance(0.3) ? 0.002 + rand 0.02 : 0,
			count    => 1 + int rand 3,
			ops      => [ map { make_op($p, \%c, 1) } 1 .. 1 + int rand 2 ],
		};
	}
	return \%c;
}

sub make_plan {
	my ($i) = @_;
	my %p = (iter => $i);
	$NAME = 0;
	my $r = rand;
	$p{kind} = $r < 0.45 ? 'rcpt' : $r < 0.8 ? 'pkg' : 'mixed';
	$p{big} = chance(0.06);
	$p{ties} = chance(0.55);    # otherwise nothing tied in this iteration
	$p{T} = $p{big} ? pick(0.6, 0.8) : pick(0.4, 0.5, 0.6, 0.8);
	$p{H} = 0.1;
	$p{conns} = [ map { conn_plan($p{kind} eq 'mixed' ? pick('rcpt', 'pkg') : $p{kind}, \%p, $_) } 0 .. 15 ];
	$p{answers} = $p{kind} eq 'pkg' ? pick('auto', 'auto', 'package', 'package', 'recipient') : pick('auto', 'auto', 'recipient');
	$p{enc} = pick('unix', 'unix', 'dos');
	$p{calls} = [ map { make_call(\%p, $_) } 0 .. int rand 3 ];
	return \%p;
}

# ---------------------------------------------------------------------
# The fake server's script (runs in the server's child process)
# ---------------------------------------------------------------------

sub ns { length($_[0]) . ':' . $_[0] . ',' }

# Log lines (tab-separated) in conn-N.log, beside conn-N.in:
#   P p n            package p read in full, n recipients
#   A p k kind code hex(text)   an answer written (kind r: for recipient k;
#                    p: the one answer to the package; x: an extra one)
#   G p hex(bytes)   garbage or a cut-off answer written
#   M p bytes        closed in the middle of package p, having read that many bytes
#   E                the client's EOF (half-close or close) was seen
#   W                a write failed
#   C                the server closes the connection
sub serve {
	my ($plan, $c, $n) = @_;
	my $cp = $plan->{conns}[$n] || { %{ $plan->{conns}[-1] }, fault => 'none' };
	srand($cp->{seed});
	open my $log, '>>', "$c->{dir}/conn-$n.log" or die "log: $!";
	binmode $log;
	select((select($log), $| = 1)[0]);
	my $L = sub { print {$log} join("\t", @_), "\n" };
	my $hangup = sub {
		$L->('E') if $c->eof || $c->wait_eof(0.002);
		$L->('C');
	};
	my $emit = sub {
		my $stream = '';
		for my $a (@_) {
			$L->('A', @$a[0 .. 3], unpack('H*', $a->[4]));
			$stream .= ns($a->[3] . $a->[4]);
		}
		return 1 unless length $stream;
		if ($cp->{split}) {
			for (my $pos = 0; $pos < length $stream;) {
				my $len = 1 + int rand 7;
				$c->write(substr $stream, $pos, $len) or do { $L->('W'); return 0 };
				$pos += $len;
				$c->sleep(0.0005 + rand 0.002);
			}
			return 1;
		}
		return 1 if $c->write($stream);
		$L->('W');
		return 0;
	};
	my $junk = sub {
		my ($p, $bytes) = @_;
		$L->('G', $p, unpack('H*', $bytes));
		$c->write($bytes) or $L->('W');
	};
	my $code = sub {
		my $r = rand;
		return $r < $cp->{kp} ? 'K' : $r < $cp->{kp} + (1 - $cp->{kp}) / 2 ? 'Z' : 'D';
	};
	my $suffix = sub { $cp->{odd} ? pick(" \0x", "\n(#4.3.0)", " \xff\xfe", ' ok') : '' };
	$c->sleep($cp->{slow_start}) if $cp->{slow_start};
	my $p = 0;
	while (1) {
		if ($cp->{fault} eq 'midpkg' && $p + 1 == $cp->{at}) {
			my $got = $c->read_bytes($cp->{bytes});
			$L->('M', $p + 1, length $got);
			return $hangup->();
		}
		my $pkg = $c->read_package;
		if (!$pkg) {
			$L->('E') if $c->eof;
			$L->('C');
			return;
		}
		$p++;
		my $nr = @{ $pkg->{recipients} };
		$L->('P', $p, $nr);
		$c->sleep(0.02 + rand 0.1) if rand() < $cp->{delay_p};
		my $fault = $p == $cp->{at} ? $cp->{fault} : 'none';
		$c->sleep(0.1 + rand 0.15) if $fault eq 'slow';
		if ($cp->{kind} eq 'rcpt') {
			my @ans = map { [ $p, $_, 'r', $code->(), "c$n p$p r$_" . $suffix->() ] } 1 .. $nr;
			my $k = $cp->{k} < $nr ? $cp->{k} : $nr - 1;
			if ($fault eq 'close_after' || $fault eq 'cut') {
				$emit->(@ans[0 .. $k - 1]);
				$junk->($p, substr(ns("K" . $ans[$k][4]), 0, 1 + int rand 4)) if $fault eq 'cut';
				return $hangup->();
			}
			if ($fault eq 'stall' || $fault eq 'stall_rest' || $fault eq 'garbage') {
				$emit->(@ans[0 .. $k - 1]);
				$junk->($p, $cp->{garbage}) if $fault eq 'garbage';
				my $eof = $c->wait_eof(8);
				$L->('E') if $eof;
				$emit->(@ans[$k .. $#ans]) if $eof && $fault eq 'stall_rest';
				$L->('C');
				return;
			}
			push @ans, [ $p, $nr + 1, 'x', 'K', "c$n p$p extra" . $suffix->() ] if $fault eq 'extra';
			$emit->(@ans) or return $L->('C');
		} else {
			my $a = [ $p, 1, 'p', $code->(), "c$n p$p pkg" . $suffix->() ];
			if ($fault eq 'close_now' || $fault eq 'refuse') {
				$a->[3] = 'Z' if $fault eq 'refuse';
				$emit->($a);
				return $hangup->();
			}
			if ($fault eq 'cut') {
				$junk->($p, substr(ns("K" . $a->[4]), 0, 1 + int rand 4));
				return $hangup->();
			}
			if ($fault eq 'stall' || $fault eq 'garbage') {
				$junk->($p, $cp->{garbage}) if $fault eq 'garbage';
				$L->('E') if $c->wait_eof(8);
				$L->('C');
				return;
			}
			my @ans = ($a);
			push @ans, [ $p, 2, 'x', 'K', "c$n p$p extra" . $suffix->() ] if $fault eq 'extra';
			$emit->(@ans) or return $L->('C');
		}
	}
}

# ---------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------

sub make_val {
	my ($str, $form, $hooks) = @_;
	my $v = $str;
	utf8::upgrade($v) if $form =~ /utf8/;
	return T62::Str->new($v, $hooks) if $form =~ /^overload/;
	return $v;
}

sub set_slot {
	my ($ref, $str, $form, $hooks) = @_;
	if ($form eq 'tied') {
		tie $$ref, 'T62::TScalar', $str, $hooks;
		return;
	}
	$$ref = make_val($str, $form, $hooks);
	Internals::SvREADONLY($$ref, 1) if $form =~ /^ro/;
}

sub build_job {
	my ($s) = @_;
	my (%h, @r);
	if ($s->{rcpts_tied}) {
		my $t = tie @r, 'T62::TArray';
		$HOOKS{ refaddr($t) } = $s->{hooks}{array};
		push @r, make_val($s->{rcpts}[$_], $s->{forms}{rcpts}[$_], $s->{hooks}{rcpt}{$_}) for 0 .. $#{ $s->{rcpts} };
	} else {
		set_slot(\$r[$_], $s->{rcpts}[$_], $s->{forms}{rcpts}[$_], $s->{hooks}{rcpt}{$_}) for 0 .. $#{ $s->{rcpts} };
	}
	my @fields = (sender => $s->{sender}, message => $s->{message}, (defined $s->{enc} ? (encoding => $s->{enc}) : ()));
	if ($s->{hash_tied}) {
		my $t = tie %h, 'T62::THash';
		$HOOKS{ refaddr($t) } = $s->{hooks}{hash};
		while (my ($k, $v) = splice @fields, 0, 2) {
			my $f = $s->{forms}{ $k eq 'encoding' ? 'enc' : $k };
			$h{$k} = make_val($v, $f, $s->{hooks}{ $k eq 'encoding' ? 'enc' : $k });
		}
		$h{recipients} = \@r;
	} else {
		while (my ($k, $v) = splice @fields, 0, 2) {
			my $f = $s->{forms}{ $k eq 'encoding' ? 'enc' : $k };
			set_slot(\$h{$k}, $v, $f, $s->{hooks}{ $k eq 'encoding' ? 'enc' : $k });
		}
		$h{recipients} = \@r;
	}
	return \%h;
}

# What an input looks like, read without running FETCH or overloads.
sub desc_scalar {
	my ($r) = @_;
	if (my $t = tied $$r) {
		return [ 'tied', refaddr($t), desc_plain(\$t->{val}) ];
	}
	return desc_plain($r);
}

sub desc_plain {
	my ($r) = @_;
	return ['undef'] unless defined $$r;
	return [ 'ref', ref($$r), refaddr($$r) ] if ref $$r;
	return [ 'str', utf8::is_utf8($$r) ? 1 : 0, Internals::SvREADONLY($$r) ? 1 : 0, "$$r" ];
}

sub desc_job {
	my ($h) = @_;
	my $store = job_store($h);
	my %d = (tied => (tied %$h ? refaddr(tied %$h) : 0));
	for my $k (keys %$store) {
		my $r = \$store->{$k};
		if ($k eq 'recipients' && ref $$r eq 'ARRAY' && !tied $$r) {
			my $a = $$r;
			my $t = tied @$a;
			my $as = $t ? $t : $a;
			$d{$k} = [ 'array', refaddr($a), $t ? refaddr($t) : 0, [ map { desc_scalar(\$as->[$_]) } 0 .. $#$as ] ];
		} else {
			$d{$k} = desc_scalar($r);
		}
	}
	return \%d;
}

sub desc_kind {
	my ($b, $a) = @_;
	return undef if !defined $b && !defined $a;
	return 'vanished' if !defined $a;
	return 'appeared' if !defined $b;
	return 'kind' if $b->[0] ne $a->[0];
	if ($b->[0] eq 'str') {
		return 'value' if $b->[3] ne $a->[3];
		return 'UTF-8 flag' if $b->[1] != $a->[1];
		return 'read-only flag' if $b->[2] != $a->[2];
		return undef;
	}
	if ($b->[0] eq 'tied') {
		return 'tie' if $b->[1] != $a->[1];
		return desc_kind($b->[2], $a->[2]);
	}
	if ($b->[0] eq 'ref') {
		return $b->[2] == $a->[2] ? undef : 'identity';
	}
	if ($b->[0] eq 'array') {
		return 'identity' if $b->[1] != $a->[1] || $b->[2] != $a->[2];
		return 'length' if @{ $b->[3] } != @{ $a->[3] };
		for my $i (0 .. $#{ $b->[3] }) {
			my $k = desc_kind($b->[3][$i], $a->[3][$i]);
			return $k if $k;
		}
		return undef;
	}
	return undef;
}

sub bytes_of {
	my ($s) = @_;
	my $b = $s;
	utf8::downgrade($b);
	return $b;
}

sub package_bytes {
	my ($enc, $sender, $rcpts, $message) = @_;
	return ns($enc . bytes_of($message)) . ns(bytes_of($sender)) . ns(join '', map { ns(bytes_of($_)) } @$rcpts);
}

# Every package the caller's inputs (and the test's own changes) describe
# for a job: the original, what replaced it, each with 0 .. n of the
# recipients pushed onto it. A job replaced by the test's code has no
# encoding of its own: it takes the object's. A change made while the client was still reading the job's
# fields (by an overload or a FETCH of that very job) may leave some fields
# read before it and some after: each field is then the old or the new one.
sub variants {
	my ($s, $enc, $default_enc, $pushes, $replaced) = @_;
	my @senders = ($s->{sender});
	my @lists = ($s->{rcpts});
	my @messages = ($s->{message});
	my @encs = ($enc);
	for my $r (@{ $replaced || [] }) {
		if ($r->{append}) {
			push @messages, map { $_ . $r->{append} } @messages;
		} elsif (defined $r->{sender}) {
			push @senders, $r->{sender};
			push @lists, $r->{rcpts};
			push @messages, $r->{message};
			push @encs, $default_enc;
		} else {
			push @lists, $r->{rcpts};
		}
	}
	my @pushed = @{ $pushes || [] };
	my (%seen, @out);
	for my $e (@encs) {
		for my $sender (@senders) {
			for my $m (@messages) {
				for my $l (@lists) {
					for my $k (0 .. @pushed) {
						my $b = package_bytes($e, $sender, [ @$l, @pushed[0 .. $k - 1] ], $m);
						push @out, $b unless $seen{$b}++;
					}
				}
			}
		}
	}
	return @out;
}

# ---------------------------------------------------------------------
# One call
# ---------------------------------------------------------------------

sub norm_err {
	my ($e) = @_;
	$e = "$e";
	$e =~ s/ at \S+ line \d+\.?\n?\z//;
	$e =~ s/\bjob \d+/job N/g;
	$e =~ s/\s+\z//;
	return $e;
}

sub run_call {
	my ($q, $p, $call, $enc, $V) = @_;
	my $type = $call->{type};
	my %cur = (call => $call, q => $q, pushes => {}, replaced => {}, touched => {}, disrupted => 0,
		events => [], signals => 0, sig => $call->{sig});
	my (@jobs, @before, @passed, @passed_before);
	if ($type eq 'send_many') {
		@jobs = map { build_job($_) } @{ $call->{jobs} };
		$cur{jobs} = [@jobs];
		$cur{jobs_array} = \@jobs;
		@before = map { desc_job($_) } @jobs;
	} else {
		my $s = $call->{jobs}[0];
		my $ok = eval { $q->new_envelope; $q->new_message; 1 };
		if (!$ok) {
			$V->('setup', 'new_message() dies after an earlier call', norm_err($@));
			$q->{MESSAGE} = undef;    # so that the iteration goes on
			Internals::SvREADONLY($q->{MESSAGE}, 0);
		}
		my @vals = ([ 'sender', $s->{sender}, $s->{forms}{sender}, $s->{hooks}{sender} ],
			(map { [ 'recipient', $s->{rcpts}[$_], $s->{forms}{rcpts}[$_], $s->{hooks}{rcpt}{$_} ] } 0 .. $#{ $s->{rcpts} }),
			[ 'message', $s->{message}, $s->{forms}{message}, $s->{hooks}{message} ]);
		for my $v (@vals) {
			my $var;
			set_slot(\$var, @$v[1 .. 3]);
			push @passed, [ $v->[0], \$var ];
		}
		push @passed_before, desc_scalar($_->[1]) for @passed;
		eval {
			$q->sender(${ $passed[0][1] });
			$q->recipient(${ $_->[1] }) for @passed[1 .. $#passed - 1];
			$q->message(${ $passed[-1][1] });
			1;
		} or $V->('setup', 'setting up send() died', norm_err($@));
		$cur{jobs} = [];
	}
	my $nj = @{ $call->{jobs} };
	my $bound = 2 * $p->{T} + $nj * ($p->{H} + 0.4) + ($p->{big} ? 2.5 : 0) + 1.0;
	my $label = "iteration $p->{iter} call $call->{idx} ($type)";

	local $CUR = \%cur;
	my $summary = call_summary($call);
	print STDERR "# TRACE $label: $summary\n" if $TRACE;
	if (open my $fh, '>', "$TMP/progress-$p->{iter}") {
		print {$fh} "$label: $summary";
		close $fh;
	}
	heartbeat($bound + 1, $label);
	my $child;
	my ($res, $resp, $died);
	my $t0 = Time::HiRes::time();
	{
		local $ARMED = 1;
		local $IN_CALL = 1;
		if (my $sig = $call->{sig}) {
			if ($sig->{how} eq 'ualarm') {
				Time::HiRes::ualarm(int($sig->{delay} * 1e6), int($sig->{interval} * 1e6));
			} else {
				$child = signal_child($sig->{delay}, $sig->{count}, $sig->{interval} || 0.01);
			}
		}
		my $ok = eval {
			$res = $type eq 'send' ? $q->send : $call->{aref} ? $q->send_many(\@jobs) : $q->send_many(@jobs);
			1;
		};
		$died = $ok ? undef : defined $@ ? "$@" : 'unknown';
	}
	print STDERR "# TRACE $label: " . (defined $died ? 'died: ' . norm_err($died) : 'returned') . ", events: "
		. (join(', ', @{ $cur{events} }) || 'none') . "\n" if $TRACE;
	my $elapsed = Time::HiRes::time() - $t0;
	Time::HiRes::ualarm(0, 0);
	if ($child) {
		kill 'TERM', $child;
		waitpid $child, 0;
	}
	heartbeat(120, "after $label");
	if ($type eq 'send') {
		$resp = eval { $q->responses };
		$V->('setup', 'responses() dies after send()', norm_err($@)) unless $resp || !$@;
	}
	@JUNK = ();

	# 3: within the timeouts
	if (defined $died && $died =~ /t62 watchdog/) {
		$V->('3', "$type hung past its time bound (the watchdog ended it)", sprintf('%.2f s, bound %.2f s', $elapsed, $bound));
	} elsif ($elapsed > $bound) {
		$V->('3', "$type took longer than its timeouts allow",
			sprintf('%.2f s > bound %.2f s (Timeout %s, %d jobs)', $elapsed, $bound, $p->{T}, $nj));
	}
	# die: only when the test's own code disrupted the call
	if (defined $died && !$cur{disrupted} && $died !~ /t62 watchdog/) {
		$V->('die', "$type died though no caller code disrupted it: " . norm_err($died),
			'inputs: ' . input_summary($call));
	}
	# 4: inputs unchanged
	if ($type eq 'send_many') {
		for my $j (0 .. $#jobs) {
			next if $cur{touched}{"$j/*"};
			my $a = desc_job($cur{jobs}[$j]);
			my $b = $before[$j];
			for my $key (sort keys %{ { %$a, %$b } }) {
				next if $key eq 'tied';
				next if $cur{touched}{"$j/$key"};
				my $kind = desc_kind($b->{$key}, $a->{$key}) or next;
				my $what = $b->{$key} && $b->{$key}[0] eq 'array' ? 'recipient' : $key;
				$V->('4', "send_many changed the caller's $what ($kind)",
					"job " . ($j + 1) . " $key: " . form_of($call->{jobs}[$j], $key));
			}
			$V->('4', "send_many changed the caller's job hash (tie)", 'job ' . ($j + 1)) if $a->{tied} != $b->{tied};
		}
		if (!$cur{touched}{array}) {
			for my $j (0 .. $#jobs) {
				next if refaddr($jobs[$j]) == refaddr($cur{jobs}[$j]);
				$V->('4', "send_many changed the caller's list of jobs", 'job ' . ($j + 1));
			}
		}
	} else {
		for my $i (0 .. $#passed) {
			my $kind = desc_kind($passed_before[$i], desc_scalar($passed[$i][1])) or next;
			$V->('4', "send changed the caller's $passed[$i][0] ($kind)", '');
		}
	}
	my @variants;
	for my $j (0 .. $nj - 1) {
		my $s = $call->{jobs}[$j];
		my $e = $ENC{ defined $s->{enc} ? $s->{enc} : $enc };
		push @variants, [ variants($s, $e, $ENC{$enc}, $cur{pushes}{$j}, $cur{replaced}{$j}) ];
	}
	return {
		idx => $call->{idx}, type => $type, call => $call, res => $res, resp => $resp, died => $died,
		disrupted => $cur{disrupted}, events => $cur{events}, signals => $cur{signals},
		variants => \@variants, elapsed => $elapsed,
	};
}

sub call_summary {
	my ($call) = @_;
	my $ops = sub { join '+', map { $_->{op} . (defined $_->{job} && $_->{op} !~ /self|peek|die/ ? ' job ' . ($_->{job} + 1) : '') } @{ $_[0] || [] } };
	my @hooks;
	for my $j (0 .. $#{ $call->{jobs} }) {
		my $hk = $call->{jobs}[$j]{hooks} || {};
		for my $f (sort keys %$hk) {
			my @l = ref $hk->{$f} eq 'HASH' ? map { [ "recipient " . ($_ + 1), $hk->{$f}{$_} ] } sort keys %{ $hk->{$f} } : ([ $f, $hk->{$f} ]);
			push @hooks, map { 'job ' . ($j + 1) . " $_->[0]: " . $ops->($_->[1]) } grep { $_->[1] && @{ $_->[1] } } @l;
		}
	}
	my $sig = $call->{sig};
	return 'inputs: ' . input_summary($call) . '; nasty overloads/FETCHes: ' . (join(', ', @hooks) || 'none')
		. '; signal: ' . ($sig ? sprintf('%s after %.4f s (interval %.4f) -> %s', $sig->{how}, $sig->{delay}, $sig->{interval}, $ops->($sig->{ops})) : 'none');
}

sub form_of {
	my ($s, $key) = @_;
	return 'form ' . ($key eq 'recipients'
		? ($s->{rcpts_tied} ? 'tied array of ' : 'array of ') . join(',', @{ $s->{forms}{rcpts} })
		: ($s->{forms}{ $key eq 'encoding' ? 'enc' : $key } || '?')) . ($s->{hash_tied} ? ' in a tied hash' : '');
}

sub input_summary {
	my ($call) = @_;
	return join '; ', map {
		my $s = $_;
		($s->{hash_tied} ? 'tied hash ' : '') . "sender $s->{forms}{sender}, message $s->{forms}{message}, "
			. ($s->{rcpts_tied} ? 'tied ' : '') . 'rcpts ' . join(',', @{ $s->{forms}{rcpts} })
			. (defined $s->{enc} ? ", encoding $s->{forms}{enc}" : '')
	} @{ $call->{jobs} };
}

# ---------------------------------------------------------------------
# Oracles 1 and 2, against the server's logs and recordings
# ---------------------------------------------------------------------

sub printable {
	my ($s) = @_;
	$s = substr($s, 0, 120) . '...' if length $s > 120;
	$s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
	return $s;
}

sub read_server {
	my ($srv, $it) = @_;
	my $nconn = $srv->connections;
	for my $n (0 .. $nconn - 1) {
		my @ev;
		if (open my $fh, '<', $srv->dir . "/conn-$n.log") {
			while (my $line = <$fh>) {
				chomp $line;
				push @ev, [ split /\t/, $line, -1 ];
			}
		}
		$it->{events}[$n] = \@ev;
		$it->{wire}[$n] = [ $srv->packages($n) ];
		for my $i (0 .. $#ev) {
			my $e = $ev[$i];
			next unless $e->[0] eq 'A';
			my $text = pack 'H*', $e->[5];
			$it->{answers}{$text} = { n => $n, p => $e->[1], k => $e->[2], kind => $e->[3], code => $e->[4],
				idx => $i, text => $text };
		}
	}
	return $nconn;
}

# May answer A stand for the recipient at position $i of its package?
sub earned {
	my ($it, $A, $i) = @_;
	return 0 if $A->{kind} eq 'x';
	return 1 if $A->{kind} eq 'r' && $A->{k} == $i;
	return 0 unless $A->{k} == 1;
	return 1 if $i == 1;
	my $decl = $it->{declared};
	return 0 if $decl eq 'recipient';
	return 1 if $decl eq 'package' && $A->{kind} eq 'p';
	my $ev = $it->{events}[ $A->{n} ];
	return 0 if grep { $_->[0] eq 'A' && $_->[1] == $A->{p} && $_->[2] != 1 } @$ev;
	my @after = @$ev[ $A->{idx} + 1 .. $#$ev ];
	return 0 if grep { $_->[0] eq 'A' || $_->[0] eq 'G' } @after;
	return (grep { $_->[0] eq 'E' } @after) ? 1 : 0;
}

sub conn_kind {
	my ($it, $n) = @_;
	my $cp = $it->{plan}{conns}[$n] || $it->{plan}{conns}[-1];
	return $cp->{kind} eq 'rcpt' ? 'per-recipient' : 'per-package';
}

sub check_one {
	my ($it, $rec, $j, $pos, $name, $code, $text, $where, $V) = @_;
	my $chk = $code eq 'K' ? '1' : '1b';
	my $what = $code eq 'K' ? 'success' : 'failure';
	my $ctx = "$rec->{type}, Answers $it->{declared}";
	my $id = sprintf '%s job %d recipient %s%s text "%s"', $where, $j + 1, printable($name),
		defined $pos ? " (position $pos)" : '', printable($text);
	# The job's own complete packages on the wire: a recipient none of
	# them has was appended during the send and gets no answer.
	my @own = @{ $it->{job_wire}{"$rec->{idx}/$j"} || [] };
	if (@own) {
		my $has = defined $pos
			? grep({ @{ $_->{recipients} } >= $pos } @own)
			: grep({ my $P = $_; grep { $_ eq $name } @{ $P->{recipients} } } @own);
		if (!$has) {
			$V->('count', "$what for a recipient its package does not have (the job was changed during the send) [$ctx]",
				"$id; the package had " . join(',', map { scalar @{ $_->{recipients} } } @own) . ' recipients');
			return;
		}
	}
	my $A = $it->{answers}{$text};
	if (!$A) {
		$V->($chk, "$what with a text the server never sent [$ctx]", $id);
		return;
	}
	# A server that sent an answer too many shifts every later answer on
	# that connection: nothing after it can be attributed by any client
	# (the fault is the server's; a client may still notice and defer).
	my $ev = $it->{events}[ $A->{n} ];
	return if grep { $_->[0] eq 'A' && $_->[3] eq 'x' } @$ev[ 0 .. $A->{idx} ];
	# Declared 'recipient' to a server that answers once per package, the
	# client matches answers on the declaration alone (as the POD says); an
	# extra answer anywhere on the connection then makes up the count, and
	# no client can tell whose each answer is.
	return if $it->{declared} eq 'recipient' && conn_kind($it, $A->{n}) eq 'per-package'
		&& grep { $_->[0] eq 'A' && $_->[3] eq 'x' } @$ev;
	my $sk = conn_kind($it, $A->{n});
	$ctx = "$rec->{type}, $sk server, Answers $it->{declared}";
	$id .= " = answer $A->{k} ($A->{kind}) to package $A->{p} on connection $A->{n}";
	if ($A->{code} ne $code) {
		$V->($chk, "$what from an answer with another status [$ctx]", $id);
		return;
	}
	my $P = $it->{wire}[ $A->{n} ][ $A->{p} - 1 ];
	if (!$P) {
		$V->($chk, "$what from an answer to a package not on the wire [$ctx]", $id);
		return;
	}
	my $own = $it->{accept}{ $P->{raw} };
	if (!$own || $own->[0] != $rec->{idx} || $own->[1] != $j) {
		my ($tag) = $P->{raw} =~ /(it\d+\.c\d+\.j\d+)\b/;
		if (!$own && defined $tag && $tag eq $rec->{call}{jobs}[$j]{tag}) {
			$V->($chk, "$what for the job's package that reached the server with wrong bytes [$ctx]", $id);
		} else {
			$V->($chk, "$what from the answer to another job's package [$ctx]",
				"$id, which carried " . ($tag || 'an unknown package'));
		}
		return;
	}
	my @rc = @{ $P->{recipients} };
	my @pos;
	if (defined $pos) {
		if ($pos > @rc) {
			$V->('count', "$what for a recipient beyond its package's recipients (appended during the send) [$ctx]",
				"$id; the package had " . scalar(@rc));
			return;
		}
		if ($rc[ $pos - 1 ] ne $name) {
			$V->('1c', "responses() names another recipient than its package has at that position [$ctx]",
				"$id; the package has " . printable($rc[ $pos - 1 ]));
		}
		@pos = ($pos);
	} else {
		@pos = grep { $rc[ $_ - 1 ] eq $name } 1 .. @rc;
		if (!@pos) {
			$V->('count', "$what in the result hash for a recipient its package does not have [$ctx]", $id);
			return;
		}
	}
	return if grep { earned($it, $A, $_) } @pos;
	my $why = $A->{kind} eq 'x' ? 'an extra answer beyond the package\'s'
		: $A->{kind} eq 'r' ? 'the answer for another recipient position of the package'
		: 'the once-per-package answer spread to other recipients without proof';
	$V->($chk, "$what not earned: $why [$ctx]", $id);
}

sub check_hash {
	my ($it, $rec, $j, $h, $where, $V) = @_;
	for my $key (sort keys %$h) {
		my $v = $h->{$key};
		next unless defined $v && $v =~ /\A(success|failure): (.*)\z/s;
		check_one($it, $rec, $j, undef, $key, $1 eq 'success' ? 'K' : 'D', $2, $where, $V);
	}
}

sub check_list {
	my ($it, $rec, $j, $list, $where, $V) = @_;
	for my $i (1 .. @$list) {
		my $e = $list->[ $i - 1 ];
		next unless ref $e eq 'HASH' && defined $e->{code};
		next unless $e->{code} eq 'K' || $e->{code} eq 'D';
		if (!$e->{received}) {
			$V->('1', "$where: a K or D marked as not received", "job " . ($j + 1) . " position $i");
			next;
		}
		my $name = defined $e->{recipient} ? "$e->{recipient}" : '(undef)';
		check_one($it, $rec, $j, $i, $name, $e->{code}, defined $e->{text} ? $e->{text} : '', $where, $V);
	}
}

sub check_results {
	my ($it, $rec, $V) = @_;
	return if defined $rec->{died};
	my $res = $rec->{res};
	if ($rec->{type} eq 'send') {
		if (defined $res) {
			if (ref $res eq 'HASH') {
				check_hash($it, $rec, 0, $res, "send()'s hash:", $V);
			} else {
				$V->('shape', 'send() returned something other than a hash reference or undef', ref $res);
			}
		}
		my $list = $rec->{resp};
		if (ref $list eq 'ARRAY') {
			check_list($it, $rec, 0, $list, 'responses():', $V);
			if (ref $res eq 'HASH') {
				for my $key (sort keys %$res) {
					my ($last) = grep { ref $_ eq 'HASH' && defined $_->{recipient} && "$_->{recipient}" eq $key } reverse @$list;
					next if $last && defined $last->{response} && $last->{response} eq $res->{$key};
					$V->('R', 'responses() disagrees with the hash send() returned' . (@$list ? '' : ' (it is empty)'),
						'recipient ' . printable($key) . ': ' . printable($res->{$key}) . ' vs '
						. ($last ? printable($last->{response}) : 'no entry')
						. (grep({ $_ eq 'peek' } @{ $rec->{events} }) ? '; a handler called responses() during the send' : ''));
				}
			}
		}
		return;
	}
	my $nj = @{ $rec->{call}{jobs} };
	if (!defined $res) {
		return;    # nothing could be tried: error() says why
	}
	if (ref $res ne 'ARRAY' || @$res != $nj) {
		$V->('shape', 'send_many did not return one entry per job', ref $res eq 'ARRAY' ? scalar(@$res) . " for $nj" : ref $res);
		return;
	}
	for my $j (0 .. $nj - 1) {
		my $e = $res->[$j];
		next unless ref $e eq 'HASH';
		check_hash($it, $rec, $j, $e->{result}, 'send_many result:', $V) if ref $e->{result} eq 'HASH';
		check_list($it, $rec, $j, $e->{responses}, 'send_many responses:', $V) if ref $e->{responses} eq 'ARRAY';
	}
}

# 2: every complete package on the wire is one the caller gave.
sub check_wire {
	my ($it, $V) = @_;
	for my $n (0 .. $#{ $it->{wire} }) {
		my $pk = $it->{wire}[$n] || [];
		for my $i (0 .. $#$pk) {
			my $P = $pk->[$i];
			next if $it->{accept}{ $P->{raw} };
			my ($tag) = $P->{raw} =~ /(it\d+\.c(\d+)\.j(\d+))/;
			my ($ci, $j) = ($2, $3);
			my $rec = defined $ci ? $it->{calls}[$ci] : undef;
			my $want = $rec && $rec->{variants}[$j] ? $rec->{variants}[$j][0] : undef;
			my $class = 'an unidentifiable package';
			my $detail = "connection $n package " . ($i + 1) . ': ' . printable($P->{raw});
			if (defined $want) {
				my ($W) = Test::QMTPServer::parse_packages($want);
				my $s = $rec->{call}{jobs}[$j];
				if ($P->{enc} ne $W->{enc}) {
					$class = 'the wrong encoding byte';
				} elsif ($P->{message} ne $W->{message}) {
					my $u = $W->{message};
					utf8::encode($u);
					$class = $P->{message} eq $u ? 'the message as its internal UTF-8 bytes'
						: $P->{message} eq '' ? 'an empty message'
						: $P->{message} =~ /ZZZZZZZZ/ ? 'message bytes from a freed buffer'
						: substr($u, 0, length $P->{message}) eq $P->{message}
						? "the first bytes of the message's UTF-8 form (its buffer moved under the send)"
						: 'other message bytes';
				} elsif ($P->{sender} ne $W->{sender}) {
					$class = 'another sender';
				} else {
					$class = 'other recipients';
				}
				my $d = 0;
				$d++ while $d < length($P->{raw}) && $d < length($want) && substr($P->{raw}, $d, 1) eq substr($want, $d, 1);
				$detail = sprintf '%s job %d (%s) on connection %d package %d: %d bytes, expected %d, first difference at %d: got "%s", expected "%s"; inputs: %s; caller code: %s',
					$rec->{type}, $j + 1, $tag, $n, $i + 1, length $P->{raw}, length $want, $d,
					printable(substr($P->{raw}, $d > 20 ? $d - 20 : 0, 60)), printable(substr($want, $d > 20 ? $d - 20 : 0, 60)),
					input_summary({ jobs => [$s] }), join(', ', @{ $rec->{events} }) || 'none';
			}
			$V->('2', "the server received a complete package with bytes the caller did not give: $class", $detail);
		}
	}
}

# ---------------------------------------------------------------------
# One iteration
# ---------------------------------------------------------------------

our %STATS;

sub plan_for {
	my ($i) = @_;
	srand(($SEED * 7919 + $i * 104729) % 2147483647);
	return make_plan($i);
}

sub run_iteration {
	my ($i, $plan) = @_;
	local %STATS;
	my @viol;
	my $V = sub { push @viol, { check => $_[0], short => $_[1], detail => defined $_[2] ? $_[2] : '' } };
	my $srv = Test::QMTPServer->new(script => sub { serve($plan, @_) }, timeout => 10,
		($plan->{big} ? (rcvbuf => 16384) : ()));
	my %it = (plan => $plan, declared => $ANSWERS_OK ? $plan->{answers} : 'auto', accept => {}, calls => []);
	my @warnings;
	{
		local $SIG{__WARN__} = sub { push @warnings, $_[0] };
		my $q = Net::QMTP->new('127.0.0.1:' . $srv->port, Timeout => $plan->{T}, HalfCloseAfter => $plan->{H},
			($ANSWERS_OK ? (Answers => $plan->{answers}) : ()));
		if (!$q) {
			$V->('setup', 'new() failed', $@);
		} else {
			my $enc = $plan->{enc};
			$q->encoding($enc);
			for my $call (@{ $plan->{calls} }) {
				if ($call->{enc}) {
					$enc = $call->{enc};
					$q->encoding($enc);
				}
				my $rec = run_call($q, $plan, $call, $enc, $V);
				push @{ $it{calls} }, $rec;
				for my $j (0 .. $#{ $rec->{variants} }) {
					$it{accept}{$_} ||= [ $rec->{idx}, $j ] for @{ $rec->{variants}[$j] };
				}
				$STATS{calls}++;
				$STATS{ $rec->{type} }++;
				$STATS{died}++ if defined $rec->{died};
				$STATS{disrupted}++ if $rec->{disrupted};
				$STATS{signals} += $rec->{signals};
			}
		}
		undef $q;
	}
	my $nconn = $srv->connections;
	for my $n (0 .. $nconn - 1) {
		$srv->wait_done($n, 10) or $V->('harness', 'a server script did not finish', "connection $n");
	}
	$nconn = read_server($srv, \%it);
	for my $n (0 .. $nconn - 1) {
		my $err = $srv->script_error($n);
		$V->('harness', 'the server script died', "connection $n: $err") if defined $err;
	}
	$STATS{connections} += $nconn;
	$STATS{packages} += @$_ for @{ $it{wire} || [] };
	$STATS{answers} += keys %{ $it{answers} || {} };
	for my $n (0 .. $#{ $it{wire} || [] }) {
		for my $P (@{ $it{wire}[$n] }) {
			my $own = $it{accept}{ $P->{raw} } or next;
			push @{ $it{job_wire}{"$own->[0]/$own->[1]"} }, $P;
		}
	}
	check_wire(\%it, $V);
	check_results(\%it, $_, $V) for @{ $it{calls} };
	for my $rec (@{ $it{calls} }) {
		next if defined $rec->{died};
		my @entries = $rec->{type} eq 'send' ? (ref $rec->{res} eq 'HASH' ? values %{ $rec->{res} } : ())
			: map { ref $_ eq 'HASH' && ref $_->{result} eq 'HASH' ? values %{ $_->{result} } : () }
				@{ ref $rec->{res} eq 'ARRAY' ? $rec->{res} : [] };
		$STATS{successes} += grep { defined && /^success: / } @entries;
	}
	$srv->stop;
	File::Path::remove_tree($srv->dir);
	return (\@viol, {%STATS}, \@warnings);
}

# The iteration in a child process; its findings come back in a file.
sub run_isolated {
	my ($i, $plan) = @_;
	my $file = "$TMP/result-$i";
	unlink $file, "$TMP/progress-$i";
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if (!$pid) {
		$ENV{TMPDIR} = $TMP;    # the server's directory too, removed at the end
		my ($viol, $stats, $warnings);
		my $ok = eval { ($viol, $stats, $warnings) = run_iteration($i, $plan); 1 };
		$viol ||= [];
		push @$viol, { check => 'harness', short => 'the iteration died', detail => "$@" } unless $ok;
		Storable::nstore({ viol => $viol, stats => $stats || {}, warnings => $warnings || [] }, $file);
		POSIX::_exit(0);
	}
	waitpid $pid, 0;
	my $status = $?;
	heartbeat(600, 'between iterations');
	my $r = -s $file ? eval { Storable::retrieve($file) } : undef;
	unlink $file;
	if ($r) {
		unlink "$TMP/progress-$i";
		return $r;
	}
	my $sig = $status & 127;
	my $what = $sig == 9 ? 'hung: the watchdog killed it'
		: $sig ? 'crashed: the test process died of signal ' . ($SIGNAME{$sig} || $sig)
		: 'exited without its results (status ' . ($status >> 8) . ')';
	my $where = 'before any call';
	if (open my $fh, '<', "$TMP/progress-$i") {
		local $/;
		$where = 'in ' . <$fh>;
	}
	return { viol => [ { check => $sig == 9 ? '3' : 'crash', short => "the iteration's process $what",
		detail => $where } ], stats => {}, warnings => [] };
}

sub describe_plan {
	my ($p) = @_;
	my $c0 = $p->{conns}[0];
	return sprintf 'server %s (conn 0: %s, fault %s at package %d), Answers %s, Timeout %s%s, calls: %s', $p->{kind},
		$c0->{kind}, $c0->{fault}, $c0->{at}, $p->{answers}, $p->{T}, $p->{big} ? ', big message' : '',
		join(' ', map { $_->{type} . '(' . scalar(@{ $_->{jobs} }) . ($_->{sig} ? ", signal $_->{sig}{how}" : '') . ')' } @{ $p->{calls} });
}

# ---------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------

my $watchdog = start_watchdog();
my $t_start = Time::HiRes::time();
my @iters = @ONLY ? @ONLY : (0 .. $ITERATIONS - 1);
my (%distinct, %stats, $ran);
for my $i (@iters) {
	if (!@ONLY && Time::HiRes::time() - $t_start > $BUDGET) {
		note("time budget of $BUDGET s reached after $ran iterations");
		last;
	}
	my $plan = plan_for($i);
	my $r = run_isolated($i, $plan);
	$ran++;
	$stats{$_} += $r->{stats}{$_} for keys %{ $r->{stats} };
	note("iteration $i warned: " . join('', @{ $r->{warnings} })) if @{ $r->{warnings} };
	my %seen;
	my @uniq = grep { !$seen{"$_->{check}\0$_->{short}"}++ } @{ $r->{viol} };
	ok(!@uniq, "iteration $i: " . describe_plan($plan)) or do {
		diag("  replay: NET_QMTP_SEED=$SEED NET_QMTP_ITER=$i prove -b -v t/62-oracle.t");
		my $shown = 0;
		for my $v (@uniq) {
			last if $shown++ >= $MAXDIAG;
			diag("  [$v->{check}] $v->{short}\n      $v->{detail}");
		}
		diag('  ... and ' . (@uniq - $MAXDIAG) . ' more kinds') if @uniq > $MAXDIAG;
	};
	for my $v (@uniq) {
		my $d = $distinct{"$v->{check}\0$v->{short}"} ||= { %$v, iterations => [] };
		push @{ $d->{iterations} }, $i;
	}
}
kill 'TERM', $watchdog;
waitpid $watchdog, 0;

note(sprintf 'ran %d iterations in %.1f s: %s', $ran || 0, Time::HiRes::time() - $t_start,
	join(', ', map { "$_ $stats{$_}" } sort keys %stats));
if (%distinct) {
	my @kinds = sort { $a->{check} cmp $b->{check} || $a->{short} cmp $b->{short} } values %distinct;
	diag("distinct violations (seed $SEED): " . scalar(@kinds));
	for my $d (@kinds) {
		my @its = @{ $d->{iterations} };
		diag(sprintf '  [%s] %s: %d iteration%s (%s%s)', $d->{check}, $d->{short}, scalar(@its), @its == 1 ? '' : 's',
			join(',', @its[0 .. ($#its < 4 ? $#its : 4)]), @its > 5 ? ',...' : '');
	}
}
done_testing();
