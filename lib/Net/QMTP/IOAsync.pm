package Net::QMTP::IOAsync;

# Net::QMTP's non-blocking send (send_async) watched by an IO::Async::Loop.
# The loop watches Perl handles, so it gets a duplicate of the engine's
# descriptor (closing a handle on the engine's own would close the
# connection under it), dropped as soon as the engine moves on; and a
# send can be had as a Future of its outcome.

use strict;
use warnings;

use Carp ();
use Scalar::Util ();

BEGIN {
    eval { require IO::Async::Loop; require Future; 1 }
        or Carp::croak('Net::QMTP::IOAsync needs IO::Async and Future: install them from CPAN, '
            . "or on Debian: apt-get install libio-async-perl libfuture-perl\n($@)");
}

our $VERSION = '1.00';

# Errors in the caller's arguments are reported at the caller's line.
our @CARP_NOT = ('Net::QMTP', 'Net::QMTP::Async');

sub send {
    my ($class, $loop, $q, @args) = @_;
    _check('send', $loop, $q);
    my $op = $q->send_async(@args);
    _arm($op, $q, $loop);
    return $op;
}

sub send_future {
    my ($class, $loop, $q, @args) = @_;
    _check('send_future', $loop, $q);
    my $f = $loop->new_future;
    my @results;
    # Options that are no pairs, and callbacks that are no code, are
    # send_async's to refuse: they go to it as they came.
    if (@args % 2 == 0) {
        my %opt = @args;
        my ($on_result, $on_done) = @opt{qw(on_result on_done)};
        if (!defined $on_result || ref $on_result eq 'CODE') {
            $opt{on_result} = sub {
                $results[ $_[1] ] = $_[0];
                $on_result->(@_) if $on_result;
                return;
            };
        }
        if (!defined $on_done || ref $on_done eq 'CODE') {
            $opt{on_done} = sub {
                my ($count, $error) = @_;
                # The caller's on_done first; the Future is done even if it
                # dies (its die goes on to the loop, as in send).
                my $ok = eval { $on_done->(@_) if $on_done; 1 };
                my $err = $@;
                $f->done($count, $error, \@results) unless $f->is_ready || $f->is_cancelled;
                die $err unless $ok;
                return;
            };
        }
        @args = %opt;
    }
    my $op = $q->send_async(@args);
    # Over before it needed the loop (a connection refused at once, say):
    # the Future is done already.
    if (!$f->is_ready) {
        Scalar::Util::weaken(my $wop = $op);
        $f->on_cancel(sub { $wop->cancel('cancelled: the Future was cancelled') if $wop });
    }
    _arm($op, $q, $loop);
    return $f;
}

sub _check {
    my ($func, $loop, $q) = @_;
    Carp::croak("Net::QMTP::IOAsync->$func: needs an IO::Async::Loop")
        unless Scalar::Util::blessed($loop) && $loop->isa('IO::Async::Loop');
    Carp::croak("Net::QMTP::IOAsync->$func: needs a Net::QMTP object")
        unless Scalar::Util::blessed($q) && $q->isa('Net::QMTP');
    return;
}

# Watches what the engine waits for now; nothing once the send is over.
sub _arm {
    my ($op, $q, $loop) = @_;
    my ($fd, $read, $write, $after, $serial, $ready) =
        Net::QMTP::Async::_wants($op, $q, sub { _arm(@_, $loop) }) or return;
    my $guard = $op->watch->{guard} ||= Net::QMTP::IOAsync::_Guard->new($loop);
    my $dup = Net::QMTP::Async::_dup_for($op, $guard, $fd, $serial, sub { $guard->drop_handle }, __PACKAGE__)
        or return;
    @$guard{qw(r w)} = (0, 0) if $dup == 2; # nothing watched on it yet
    if (my $fh = $guard->{fh}) {
        $read  = $read  ? 1 : 0;
        $write = $write ? 1 : 0;
        if ($read != $guard->{r}) {
            $read ? $loop->watch_io(handle => $fh, on_read_ready => sub { $ready->(1, 0) })
                  : $loop->unwatch_io(handle => $fh, on_read_ready => 1);
            $guard->{r} = $read;
        }
        if ($write != $guard->{w}) {
            $write ? $loop->watch_io(handle => $fh, on_write_ready => sub { $ready->(0, 1) })
                   : $loop->unwatch_io(handle => $fh, on_write_ready => 1);
            $guard->{w} = $write;
        }
    }
    $loop->unwatch_time(delete $guard->{timer}) if defined $guard->{timer};
    Scalar::Util::weaken(my $wguard = $guard);
    $guard->{timer} = $loop->watch_time(after => $after, code => sub {
        # Fired: it is no timer of the loop's any more.
        delete $wguard->{timer} if $wguard;
        $ready->(0, 0);
    });
    return;
}

# Removes the send's handle and timer from the loop when the send ends
# (Net::QMTP::Async drops its watch then).
package Net::QMTP::IOAsync::_Guard;

sub new { my ($class, $loop) = @_; return bless { loop => $loop }, $class }

sub drop_handle {
    my $self = shift;
    my $fh = delete $self->{fh} or return;
    $self->{loop}->unwatch_io(handle => $fh, on_read_ready => 1, on_write_ready => 1);
    close $fh;
    delete @$self{qw(fd serial r w)};
    return;
}

sub DESTROY {
    my $self = shift;
    return unless $self->{loop};
    $self->drop_handle;
    $self->{loop}->unwatch_time(delete $self->{timer}) if defined $self->{timer};
}

package Net::QMTP::IOAsync;

1;

__END__

=head1 NAME

Net::QMTP::IOAsync - send with Net::QMTP from an IO::Async program

=head1 SYNOPSIS

  use IO::Async::Loop;
  use Net::QMTP;
  use Net::QMTP::IOAsync;

  my $loop = IO::Async::Loop->new;
  my $qmtp = Net::QMTP->new('192.0.2.25', DeferConnect => 1, Timeout => 30);

  # Callbacks, as with send_async:
  Net::QMTP::IOAsync->send($loop, $qmtp,
      jobs      => \@jobs,
      on_result => sub { my ($result, $index) = @_; ... },
      on_done   => sub { my ($count, $error) = @_; $loop->stop },
  );
  $loop->run;

  # Or a Future of the whole send:
  my $f = Net::QMTP::IOAsync->send_future($loop, $qmtp, jobs => \@jobs);
  my ($count, $error, $results) = $f->get;   # runs the loop meanwhile
  for my $r (@$results) { warn $r->{error} unless $r->{ok} }

=head1 DESCRIPTION

Starts L<Net::QMTP/send_async> and lets an L<IO::Async::Loop> drive it,
through C<watch_io> and C<watch_time>: the send waits for nothing, and
the program serves its other clients while the server answers. Every
timeout of the Net::QMTP object applies, as in the blocking calls.

The loop watches a duplicate of the connection's descriptor, made when
the send starts on a connection and closed as soon as the send moves to
another or ends, with its timer; nothing is left in the loop after a
send, however it ends (cancelled, failed, or the Net::QMTP object
destroyed, which cancels the send). The callbacks hold no reference to
the object: keep it yourself while the send runs. If the descriptor
cannot be duplicated (no descriptor left), the send ends at once, every
job reported as not sent, and C<$error> says why.

This module needs IO::Async and Future (Debian: libio-async-perl,
libfuture-perl) only when it is loaded; Net::QMTP does not.

=head1 METHODS

=head2 send($loop, $qmtp, OPTIONS)

A class method: starts C<< $qmtp->send_async(OPTIONS) >> on the Net::QMTP
object, watched by C<$loop>, and returns what send_async returns (an object
with C<cancel> and C<pending>, see L<Net::QMTP::Async>). OPTIONS are
send_async's. Dies at your line for anything send_async would die for,
and if C<$loop> is not an IO::Async::Loop.

=head2 send_future($loop, $qmtp, OPTIONS)

As C<send>, but returns a L<Future> (made by C<< $loop->new_future >>),
done with C<($count, $error, \@results)> when the send is over: on_done's
two values, and every result the send reported, in the order of the
jobs. C<on_result> is optional here; C<on_result> and C<on_done>, if
given, are still called, before the Future is done.

A failed delivery is not a failed Future: the results say what became
of each job (refused, deferred, not sent), and C<$error> what ended the
send, as in send_async. The Future never fails: a send that cannot start
dies at your line, as C<send> does. Should your C<on_done> die, the
Future is done all the same, and the die goes on to the loop (out of
C<< $loop->run >>, or C<< $f->get >> while it runs the loop).

Cancelling the Future (C<< $f->cancel >>) cancels the send, as
C<< $op->cancel('cancelled: the Future was cancelled') >> would: answers
already in stand, the other jobs are reported as deferrals or not sent
saying so, C<on_done> is called, and the Future stays cancelled.

=head1 SEE ALSO

L<Net::QMTP> (SENDING WITHOUT BLOCKING), L<Net::QMTP::AnyEvent>,
L<Net::QMTP::Mojo>, L<IO::Async::Loop>, L<Future>.

=cut
