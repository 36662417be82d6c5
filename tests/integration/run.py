#!/usr/bin/python3
"""Runs pgscope's integration tests: every test_* function of every test_*.py module here."""

import argparse
import importlib
import inspect
import os
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)

import harness  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("PGSCOPE_TEST_TIMEOUT", "180"))


class TestTimeout(Exception):
    pass


_in_test = False


def _on_alarm(signum, frame):
    if _in_test:
        raise TestTimeout("test exceeded %ss" % TEST_TIMEOUT)


def _raiser(exc):
    def fail():
        raise exc
    return fail


def discover(selector):
    """(name, function) for every selected test, modules and functions in file order."""
    tests = []
    for filename in sorted(os.listdir(HERE)):
        if not (filename.startswith("test_") and filename.endswith(".py")):
            continue
        try:
            module = importlib.import_module(filename[:-3])
        except Exception as exc:  # a broken module is one failing test, not a crash
            tests.append((filename[:-3] + ".import", _raiser(exc)))
            continue
        functions = [f for name, f in inspect.getmembers(module, inspect.isfunction)
                     if name.startswith("test_") and f.__module__ == module.__name__]
        functions.sort(key=lambda f: f.__code__.co_firstlineno)
        for func in functions:
            name = "%s.%s" % (module.__name__, func.__name__)
            if selector is None or selector in name:
                tests.append((name, func))
    return tests


def describe(exc):
    text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return text.strip().replace("\n", "\n    ")


def watchdog(expired):
    """At the time limit: interrupt the test, and kill its pgscope to unblock client calls."""
    expired.set()
    harness.kill_test_processes()
    os.kill(os.getpid(), signal.SIGALRM)


def run_one(name, func, verbose):
    """Run a test; return (passed, seconds, reason)."""
    global _in_test
    start = time.monotonic()
    expired = threading.Event()
    timer = threading.Timer(TEST_TIMEOUT, watchdog, args=(expired,))
    timer.daemon = True
    timer.start()
    try:
        _in_test = True
        func()
        _in_test = False
        if expired.is_set():
            raise TestTimeout("test exceeded %ss" % TEST_TIMEOUT)
        return True, time.monotonic() - start, None
    except Exception as exc:  # a test fails on any exception
        if verbose:
            traceback.print_exc()
        reason = describe(exc)
        if expired.is_set() and not isinstance(exc, TestTimeout):
            reason = "test exceeded %ss (%s)" % (TEST_TIMEOUT, reason)
        return False, time.monotonic() - start, reason
    finally:
        _in_test = False
        timer.cancel()
        harness.close_test_resources()


def run_checked(name, func, verbose):
    """run_one, then fail the test if pgscope's log holds a sanitizer report."""
    ok, seconds, reason = run_one(name, func, verbose)
    reports = harness.take_sanitizer_reports()
    if reports:
        ok = False
        reason = "sanitizer report in pgscope's log:\n" + reports[0]
    return ok, seconds, reason


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-k", dest="selector", help="run only tests whose name contains this")
    parser.add_argument("-v", dest="verbose", action="store_true", help="print tracebacks")
    opts = parser.parse_args()
    signal.signal(signal.SIGALRM, _on_alarm)
    passed = failed = 0
    started = time.monotonic()
    for name, func in discover(opts.selector):
        ok, seconds, reason = run_checked(name, func, opts.verbose)
        notes = harness.take_notes()
        notes = " [%s]" % notes if notes else ""
        if ok:
            passed += 1
            print("PASS %s (%.1fs)%s" % (name, seconds, notes), flush=True)
        else:
            failed += 1
            print("FAIL %s: %s (%.1fs)%s" % (name, reason, seconds, notes), flush=True)
    harness.close_all_resources()
    print("integration tests took %.0fs" % (time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
