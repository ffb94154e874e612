package Test::QMTPFaults;

# What the fault tests (t/30-t/32) share: running a case, the well-behaved
# server a fault is followed by, and the checks on the results of a send()
# to the recipients @RCPTS. The counters add up every no_false_success()
# check of the test file, for its summary at the end.

use strict;
use warnings;

use Exporter 'import';
use Test::More;
use Time::HiRes ();

our @EXPORT = qw(@RCPTS %PREFIX $FALSE_SUCCESS $FAULT_SENDS
    fd_count case serve_well fault_server envelope timed_send results_ok no_false_success);

our @RCPTS  = ('a@x', 'b@x', 'c@x');
our %PREFIX = (K => 'success: ', Z => 'deferral: ', D => 'failure: ');
our $FALSE_SUCCESS = 0;
our $FAULT_SENDS   = 0;

sub fd_count {
	opendir my $dh, "/proc/$$/fd" or return undef;
	# Descriptors of 1024 and up are valgrind's own (.ci/valgrind): it
	# opens and closes them as it pleases, unseen by the test.
	my $n = grep { /^\d+\z/ && $_ < 1024 } readdir $dh;
	closedir $dh;
	return $n;
}

# Runs one case as a subtest; a die inside is a failure, not the end of
# the file. Each case gets its own alarm as well: 60 s, or the seconds
# given before the code.
sub case {
	my ($name, @rest) = @_;
	my $code = pop @rest;
	alarm(@rest ? $rest[0] : 60);
	subtest $name => sub {
		my $ok = eval { $code->(); 1 };
		fail("$name: died: $@") unless $ok;
	};
	alarm 300;
}

# The well-behaved server every fault is followed by.
sub serve_well {
	my ($c) = @_;
	while ($c->read_package) {
		$c->answer_all('K', 'ok') or last;
	}
}

# Connection 0 runs the fault, later connections behave.
sub fault_server {
	my ($fault, %opt) = @_;
	require Test::QMTPServer;
	return Test::QMTPServer->new(%opt, script => sub {
		my ($c, $n) = @_;
		return $fault->($c) if $n == 0;
		serve_well($c);
	});
}

# A fresh message from s@x to @RCPTS (or the recipients given).
sub envelope {
	my ($q, $message, @rcpts) = @_;
	@rcpts = @RCPTS unless @rcpts;
	$q->new_envelope;
	$q->new_message;
	$q->sender('s@x');
	$q->recipient($_) for @rcpts;
	$q->message($message);
}

sub timed_send {
	my ($q) = @_;
	my $t0 = Time::HiRes::time();
	my $res = eval { $q->send };
	my $died = $@;
	return ($res, Time::HiRes::time() - $t0, $died);
}

# $want: per recipient [code, text (string or qr//), received, per_package]
sub results_ok {
	my ($q, $res, $want, $name) = @_;
	my $r = $q->responses;
	is(ref $r, 'ARRAY', "$name: responses() is an array ref") or return;
	is(scalar @$r, scalar @$want, "$name: one response per recipient");
	for my $i (0 .. $#$want) {
		my ($code, $text, $received, $per_package) = @{ $want->[$i] };
		my $got = $r->[$i] || {};
		my $tag = "$name: $RCPTS[$i]";
		is_deeply(
			{ map { $_ => $got->{$_} } qw(recipient code received per_package) },
			{ recipient => $RCPTS[$i], code => $code, received => $received, per_package => $per_package },
			"$tag: recipient, code, received, per_package")
			or diag explain $got;
		if (ref $text) {
			like($got->{text}, $text, "$tag: text");
		} else {
			is($got->{text}, $text, "$tag: text");
		}
		is($got->{response}, $PREFIX{$code} . (defined $got->{text} ? $got->{text} : ''),
			"$tag: response is the prefixed text");
		if (ref $res eq 'HASH') {
			is($res->{ $RCPTS[$i] }, $got->{response}, "$tag: send() hash value");
		}
	}
}

# No recipient outside @$covered (indices a K answer covers) is a success,
# neither in the hash nor in responses().
sub no_false_success {
	my ($q, $res, $covered, $name) = @_;
	my %cov = map { $_ => 1 } @$covered;
	my @bad;
	my $r = $q->responses || [];
	for my $i (0 .. $#RCPTS) {
		next if $cov{$i};
		push @bad, "$RCPTS[$i] (responses)" if $r->[$i] && $r->[$i]{code} eq 'K';
		push @bad, "$RCPTS[$i] (hash)"
			if ref $res eq 'HASH' && defined $res->{ $RCPTS[$i] } && $res->{ $RCPTS[$i] } =~ /^success: /;
	}
	$FALSE_SUCCESS += @bad;
	$FAULT_SENDS++;
	ok(!@bad, "$name: no success for a recipient no K covers") or diag "false successes: @bad";
}

1;
