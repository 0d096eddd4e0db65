"""salfmix.runs.signals: SIGINT / SIGTERM only set a flag; the loop stops at a safe point."""

import os
import signal

import pytest

from salfmix.runs.signals import Interrupted, StopSignals, exit_code


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_sets_the_flag_and_nothing_else(signum, code):
    before = signal.getsignal(signum)
    with StopSignals() as stop:
        assert not stop.requested()
        stop.check("anywhere")
        os.kill(os.getpid(), signum)  # no KeyboardInterrupt, no exit
        os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
        assert stop.requested() and stop.signum == signum
        with pytest.raises(Interrupted) as err:
            stop.check("at epoch 2, step 3 of 4")
    assert signal.getsignal(signum) is before  # handlers restored
    assert str(err.value) == f"stopped by {signal.Signals(signum).name} at epoch 2, step 3 of 4"
    assert err.value.exit_code == code == exit_code(signum)
    assert not isinstance(err.value, Exception)  # except Exception blocks do not swallow it
