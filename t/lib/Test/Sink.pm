package Test::Sink;

# Builds and starts bench/qmtp-sink (a fast C QMTP server that answers K)
# for tests that need many thousands of messages.

use strict;
use warnings;
use Config;
use File::Temp qw(tempdir);
use POSIX ();

sub CLONE_SKIP { 1 }

sub start {
    my ($class, @args) = @_;
    my $dir = tempdir('qmtpsink-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $cc = $Config{cc} || 'cc';
    my $out = `$cc -O2 -o $dir/qmtp-sink bench/qmtp-sink.c 2>&1`;
    die "cannot build bench/qmtp-sink.c: $out" if $?;
    my $pid = open(my $fh, '-|', "$dir/qmtp-sink", @args) or die "cannot start qmtp-sink: $!";
    my $port = <$fh>;
    die 'qmtp-sink did not start' unless defined $port && $port =~ /^(\d+)$/;
    return bless { pid => $pid, fh => $fh, port => $1, dir => $dir, owner => $$ }, $class;
}

sub port { $_[0]{port} }

sub stop {
    my $self = shift;
    return unless $self->{pid} && $self->{owner} == $$;
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    $self->{pid} = 0;
}

sub DESTROY { local $?; $_[0]->stop }

1;
