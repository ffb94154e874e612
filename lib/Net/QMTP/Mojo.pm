package Net::QMTP::Mojo;

# Net::QMTP's non-blocking send (send_async) watched by Mojo::IOLoop's
# reactor. The reactor watches Perl handles, so it gets a duplicate of the
# engine's descriptor (closing a handle on the engine's own would close
# the connection under it), dropped as soon as the engine moves on.

use strict;
use warnings;

use Carp ();
use Scalar::Util ();

BEGIN {
    eval { require Mojo::IOLoop; 1 }
        or Carp::croak('Net::QMTP::Mojo needs Mojolicious: install it from CPAN, '
            . "or on Debian: apt-get install libmojolicious-perl\n($@)");
}

our $VERSION = '1.00';

# Errors in the caller's arguments are reported at the caller's line.
our @CARP_NOT = ('Net::QMTP', 'Net::QMTP::Async');

sub send {
    my ($class, $q, @args) = @_;
    Carp::croak('Net::QMTP::Mojo->send: needs a Net::QMTP object')
        unless Scalar::Util::blessed($q) && $q->isa('Net::QMTP');
    my $loop = Mojo::IOLoop->singleton;
    if (@args % 2 == 0) {
        my %opt = @args;
        if (exists $opt{loop}) {
            $loop = delete $opt{loop};
            Carp::croak('Net::QMTP::Mojo->send: loop must be a Mojo::IOLoop')
                unless Scalar::Util::blessed($loop) && $loop->isa('Mojo::IOLoop');
            @args = %opt;
        }
    }
    my $op = $q->send_async(@args);
    _arm($op, $q, $loop->reactor);
    return $op;
}

sub _arm {
    my ($op, $q, $reactor) = @_;
    my ($fd, $read, $write, $after, $serial, $ready) =
        Net::QMTP::Async::_wants($op, $q, sub { _arm(@_, $reactor) }) or return;
    my $guard = $op->watch->{guard} ||= Net::QMTP::Mojo::_Guard->new($reactor);
    my $dup = Net::QMTP::Async::_dup_for($op, $guard, $fd, $serial, sub { $guard->drop_handle }, __PACKAGE__)
        or return;
    $reactor->io($guard->{fh} => sub { $ready->($_[1] ? (0, 1) : (1, 0)) }) if $dup == 2;
    $reactor->watch($guard->{fh}, $read ? 1 : 0, $write ? 1 : 0) if $guard->{fh};
    $reactor->remove($guard->{timer}) if defined $guard->{timer};
    $guard->{timer} = $reactor->timer($after => sub { $ready->(0, 0) });
    return;
}

# Removes the send's handle and timer from the reactor when the send
# ends (Net::QMTP::Async drops its watch then).
package Net::QMTP::Mojo::_Guard;

sub new { my ($class, $reactor) = @_; return bless { reactor => $reactor }, $class }

sub drop_handle {
    my $self = shift;
    my $fh = delete $self->{fh} or return;
    $self->{reactor}->remove($fh);
    close $fh;
    delete @$self{qw(fd serial)};
    return;
}

sub DESTROY {
    my $self = shift;
    return unless $self->{reactor};
    $self->drop_handle;
    $self->{reactor}->remove(delete $self->{timer}) if defined $self->{timer};
}

package Net::QMTP::Mojo;

1;

__END__

=head1 NAME

Net::QMTP::Mojo - send with Net::QMTP from a Mojolicious program

=head1 SYNOPSIS

  use Mojo::IOLoop;
  use Net::QMTP;
  use Net::QMTP::Mojo;

  my $qmtp = Net::QMTP->new('192.0.2.25', DeferConnect => 1, Timeout => 30);
  Net::QMTP::Mojo->send($qmtp,
      jobs      => \@jobs,
      on_result => sub { my ($result, $index) = @_; ... },
      on_done   => sub { my ($count, $error) = @_; Mojo::IOLoop->stop },
  );
  Mojo::IOLoop->start unless Mojo::IOLoop->is_running;

=head1 DESCRIPTION

Starts L<Net::QMTP/send_async> and lets Mojo::IOLoop's reactor drive it,
on the singleton loop or on the one given as C<< loop => $loop >>. It
takes send_async's other arguments and returns what that returns (an
object with C<cancel> and C<pending>).

The reactor watches a duplicate of the connection's descriptor, made
when the send starts on a connection and closed as soon as the send moves
to another or ends, with its timer; nothing is left in the reactor after
a send, however it ends (cancelled, failed, or the Net::QMTP object
destroyed). The callbacks hold no reference to the object: keep it
yourself while the send runs.

This module needs Mojolicious (Debian: libmojolicious-perl) only when it
is loaded; Net::QMTP does not.

=head1 METHODS

=head2 send($qmtp, OPTIONS)

A class method: starts C<< $qmtp->send_async(OPTIONS) >> on the Net::QMTP
object, watched by Mojo::IOLoop, and returns what send_async returns.
OPTIONS are send_async's, and C<< loop => $loop >> (default:
Mojo::IOLoop's singleton). Dies at your line for anything send_async
would die for. Should the descriptor not be duplicated (the process is
out of descriptors), the send ends at once, cancelled, its error saying
why.

=head1 SEE ALSO

L<Net::QMTP> (SENDING WITHOUT BLOCKING), L<Net::QMTP::AnyEvent>,
L<Mojo::IOLoop>.

=cut
