package Net::QMTP::Async;

# The state of one non-blocking send of a Net::QMTP object (send_async):
# the stream's windows and send_many's rounds, taken by the same code as
# the blocking calls, over the C engine's steps instead of its poll loop.
# Each step's outcome moves the state on until the engine waits for the
# event loop again (RUNNING) or the stream is over. See Net::QMTP,
# "SENDING WITHOUT BLOCKING".

use strict;
use warnings;

use Carp ();
use Scalar::Util ();

our $VERSION = '1.00';

# Errors in the caller's arguments are reported at the caller's line.
our @CARP_NOT = ('Net::QMTP');

my %CORE = Net::QMTP::_constants();
my $RUNNING = $CORE{RUNNING};

sub _start {
    my ($class, $q, @args) = @_;
    my $stream = Net::QMTP::_stream_new('send_async', @args);
    my $op = bless { stream => $stream, phase => 'idle', pid => $$ }, $class;
    $op->{q} = $q;
    Scalar::Util::weaken($op->{q});
    $q->{QMTP_ERROR} = undef;
    my $w = Net::QMTP::_stream_window($q, $stream);
    # A first job that is no job is the caller's error, at the caller's
    # line: nothing was taken or sent.
    if ($w && !@{ $w->{inputs} } && !$stream->{taken}) {
        die $w->{died}[0] if $w->{died};
        Carp::croak($w->{bad}) if defined $w->{bad};
    }
    $q->{QMTP_WANTED} = 1; # it connects by itself, without blocking
    $q->{QMTP_ASYNC} = $op;
    $op->_go($q, $op->_window($q, $w));
    return $op;
}

# The engine said rc (RUNNING: it waits for the loop): moves on until it
# waits again or the stream is over.
sub _go {
    my ($op, $q, $rc) = @_;
    local $op->{going} = 1;
    my $ok = eval {
        while (defined $rc && $rc != $RUNNING) {
            $rc = $op->{phase} eq 'connect' ? $op->_connect_over($q, $rc)
                : $op->{phase} eq 'run'     ? $op->_run_over($q)
                :                             undef;
        }
        1;
    };
    return if $ok;
    my $err = $@;
    $op->_died($q, $err);
    die $err;
}

# A callback (or anything else) died while the send was moving on: the
# send ends, so that the object is not left half-way (and a loop with a
# watcher on it), and on_done says why; then the die goes on to whoever
# called, as a callback's die does in send_stream.
sub _died {
    my ($op, $q, $err) = @_;
    return if $op->{phase} eq 'done'; # on_done itself: the send was over
    Net::QMTP::_nb_cancel($q, 'cancelled: a callback died') if Net::QMTP::_nb_busy($q);
    (my $why = "send_async: a callback died: $err") =~ s/\s+\z//;
    $op->{stream}{why} = $why;
    delete @$op{qw(rounds hold w run_inputs built)};
    $op->_finish($q);
    return;
}

# Starts a window: the engine's status, or undef when the stream is over.
sub _window {
    my ($op, $q, $w) = @_;
    if (!$w || !@{ $w->{inputs} }) {
        return $op->_finish($q, $w);
    }
    if ($op->{cancelled}) {
        # Cancelled from the iterator while it filled the window: the jobs
        # it gave are reported, none is sent.
        my $why = $op->{stream}{why};
        $q->_window_results($op->{stream}, $w,
            [ map { { result => undef, responses => [], error => "not sent: $why", ok => 0 } } @{ $w->{jobs} } ]);
        return $op->_finish($q);
    }
    Net::QMTP::_call_limit($q, $q->{QMTP_TOTAL} || 0);
    $q->{QMTP_ERROR} = undef;
    $op->{w} = $w;
    # As in send_many: the messages where the caller has them stay
    # read-only while the engine may write from them.
    $op->{hold} = Net::QMTP::_ReadOnly->new(map { \$_->[3] } @{ $w->{inputs} });
    $op->{rounds} = $q->_rounds($w->{inputs}, $op->{stream}{form});
    $op->{rounds}{cancelled} = $op->{cancelled};
    return $op->_connection($q);
}

# Each round starts on a connection that may take a package (open, within
# the session limit), or on a new one.
sub _connection {
    my ($op, $q) = @_;
    my $why = Net::QMTP::_not_ready($q, $q->{SESSIONLIMIT});
    return $op->_run($q) unless defined $why;
    $q->_debug("reconnecting: $why");
    $q->_connect_begins;
    $op->{servers} = [ $q->_servers ];
    $op->{connect_why} = [];
    return $op->_next_server($q);
}

sub _next_server {
    my ($op, $q) = @_;
    $op->{phase} = 'connect';
    if (!$op->{cancelled} && @{ $op->{servers} }) {
        my ($host, $port) = $q->_server_address(shift @{ $op->{servers} });
        return Net::QMTP::_nb_connect($q, $host, $port);
    }
    # None would: the caller still wants a connection (the next round or
    # send tries again), as after a failed reconnect of a blocking send.
    $q->_fail(join '; ', @{ $op->{connect_why} });
    $q->{QMTP_WANTED} = 1;
    $q->_rounds_unsent($op->{rounds}, $q->error);
    return $op->_window_over($q);
}

sub _connect_over {
    my ($op, $q, $rc) = @_;
    if ($rc == 0) {
        $q->_connected;
        return $op->_run($q);
    }
    push @{ $op->{connect_why} }, (Net::QMTP::_error($q))[1];
    return $op->_next_server($q);
}

sub _run {
    my ($op, $q) = @_;
    my $rounds = $op->{rounds};
    $op->{mode_before} = $q->_round_begins($rounds);
    $op->{run_inputs} = [ @{ $rounds->{inputs} }[ @{ $rounds->{todo} } ] ];
    $q->{QMTP_USED}++;
    $op->{phase} = 'run';
    (my $rc, $op->{built}) = Net::QMTP::_nb_start($q, $op->{run_inputs});
    return $rc;
}

sub _run_over {
    my ($op, $q) = @_;
    my ($out, $failed) = Net::QMTP::_nb_outcomes($q, $op->{run_inputs}, $op->{built}, $op->{stream}{form});
    $op->{run_inputs} = $op->{built} = undef;
    return $op->_connection($q) if $q->_round_ends($op->{rounds}, $op->{mode_before}, $out, $failed);
    return $op->_window_over($q);
}

# The window's rounds are over: its results go to the callback, and the
# next window starts.
sub _window_over {
    my ($op, $q) = @_;
    my $w = delete $op->{w};
    my $results = $q->_rounds_results(delete $op->{rounds});
    delete $op->{hold};
    $op->{phase} = 'idle';
    $q->_window_results($op->{stream}, $w, $results);
    if ($w->{died} || defined $w->{bad}) {
        # Later in a stream, a job that is no job ends it: the caller is
        # an event loop by now, so on_done and error() say why.
        my $why = $w->{died} ? "send_async: the jobs iterator died: $w->{died}[0]" : $w->{bad};
        $why =~ s/\s+\z//;
        $op->{stream}{why} = $why;
        return $op->_finish($q);
    }
    return $op->_window($q, Net::QMTP::_stream_window($q, $op->{stream}));
}

sub _finish {
    my ($op, $q, $w) = @_;
    if ($w && ($w->{died} || defined $w->{bad})) {
        my $why = $w->{died} ? "send_async: the jobs iterator died: $w->{died}[0]" : $w->{bad};
        $why =~ s/\s+\z//;
        $op->{stream}{why} = $why;
    }
    $op->{phase} = 'done';
    $q->{QMTP_ERROR} = $op->{stream}{why};
    delete $q->{QMTP_ASYNC};
    # An event loop adapter's watchers go with the send (see watch).
    delete $op->{watch};
    my $done = $op->{stream}{on_done};
    $done->($op->{stream}{taken}, $op->{stream}{why}) if $done && !$op->{quiet};
    return undef;
}

# The loop saw the descriptor ready (or the deadline pass).
sub _ready {
    my ($op, $q, $readable, $writable) = @_;
    return 1 if $op->{going};  # called from a callback of this send
    return 0 if $op->{phase} eq 'done';
    $op->_go($q, Net::QMTP::_nb_step($q, $readable ? 1 : 0, $writable ? 1 : 0)) if Net::QMTP::_nb_busy($q);
    return $op->{phase} eq 'done' ? 0 : 1;
}

sub cancel {
    my ($op, $why) = @_;
    my $q = $op->{q} or return 0;
    return $op->_cancel($q, $why);
}

# Ends the send: what is under way is cut off (answers already in are
# kept, the rest are deferrals or not sent), no job more is taken, and
# every job taken is reported, then on_done.
sub _cancel {
    my ($op, $q, $why, $quiet) = @_;
    return 0 if $op->{phase} eq 'done';
    $why = 'cancelled' unless defined $why && length $why;
    $op->{cancelled} = 1;
    $op->{quiet} = 1 if $quiet;
    $op->{rounds}{cancelled} = 1 if $op->{rounds};
    ${ $op->{stream}{stopped} } = 1;
    $op->{stream}{why} = $why unless defined $op->{stream}{why};
    # From a callback of this send: it stops once the window is reported.
    return 1 if $op->{going} || !Net::QMTP::_nb_busy($q);
    $op->_go($q, Net::QMTP::_nb_cancel($q, $why));
    return 1;
}

sub pending { return $_[0]{phase} ne 'done' ? 1 : 0 }

# Where an event loop adapter keeps its watchers for this send: a hash,
# emptied (and the watchers destroyed) when the send ends, however it ends.
sub watch { return $_[0]{phase} ne 'done' ? ($_[0]{watch} ||= {}) : {} }

# For the adapters of this distribution: what the engine waits for now,
# as ($fd, $read, $write, $after, $serial, $ready), or nothing once the
# send is over (its op may be gone: a send that is over never takes up
# the object's next one, which its own start watches). $ready->($r, $w)
# tells the engine, then calls $rearm->($op, $q) to watch what it waits
# for next; it holds neither, so the loop's callbacks keep nothing alive.
sub _wants {
    my ($op, $q, $rearm) = @_;
    return unless $op && $op->pending;
    my ($fd, $read, $write, $after, $serial) = $q->async_wants or return;
    Scalar::Util::weaken(my $wop = $op);
    Scalar::Util::weaken(my $wq = $q);
    my $ready = sub {
        my ($r, $w) = @_;
        return unless $wop && $wq;
        $wq->async_ready($r, $w);
        $rearm->($wop, $wq);
    };
    return ($fd, $read, $write, $after, $serial, $ready);
}

# For adapters whose loop watches Perl handles: makes $guard's {fh} a
# duplicate of $fd (closing a handle on the engine's own descriptor would
# close the connection under it), unless it is one of this connection
# already; $drop->() lets the loop go of the old one first. 2 for a new
# duplicate, 1 when there is none to make or it is there already; 0 when
# none can be made: the send is cancelled then, saying why (left
# unwatched, it would never end).
sub _dup_for {
    my ($op, $guard, $fd, $serial, $drop, $who) = @_;
    return 1 if defined $fd && defined $guard->{fd} && $guard->{fd} == $fd && $guard->{serial} == $serial;
    $drop->();
    return 1 unless defined $fd;
    my $fh;
    if (!open $fh, '<&', $fd) {
        $op->cancel("$who: cannot duplicate descriptor $fd: $!");
        return 0;
    }
    @$guard{qw(fh fd serial)} = ($fh, $fd, $serial);
    return 2;
}

1;

__END__

=head1 NAME

Net::QMTP::Async - a non-blocking send of Net::QMTP under way

=head1 SYNOPSIS

  my $op = $qmtp->send_async(jobs => \@jobs, on_result => \&report, on_done => \&next);
  ...
  $op->cancel('shutting down') if $op->pending;

=head1 DESCRIPTION

What L<Net::QMTP/send_async> returns: the send it started. You need not
keep it; the Net::QMTP object keeps it while the send runs.

=head2 cancel(WHY)

As C<< $qmtp->async_cancel(WHY) >>: ends the send now (see
L<Net::QMTP/"async_cancel(WHY), async_pending()">). Returns true if it
was under way. From inside the send's own callbacks, the send ends once
the window being reported is.

=head2 pending()

True until the send is over.

=head2 watch()

A hash where an event-loop adapter keeps its watchers for this send; it
is dropped, and the watchers with it, when the send ends however it ends.
L<Net::QMTP::AnyEvent>, L<Net::QMTP::Mojo> and L<Net::QMTP::IOAsync> use
it; an adapter of your own can too.

=head1 SEE ALSO

L<Net::QMTP>, L<Net::QMTP::Internals> (the engine's steps).

=cut
