/* report.h — `pgscope report`, `check` and `diff`: read the report database, print what to fix,
 * gate a CI job on it, compare two runs. */
#ifndef PGSCOPE_REPORT_H
#define PGSCOPE_REPORT_H

/* Runs `pgscope report` with the arguments after the subcommand. Returns the exit code:
 * 0 printed, 1 the database could not be read, 2 bad usage. */
int report_main(int argc, char **argv);

/* Runs `pgscope check` (src/report/check.c). Returns the exit code: 0 every rule passed, 1 a rule
 * failed, 2 bad usage, 3 the database could not be read or the output not written. */
int check_main(int argc, char **argv);

/* Runs `pgscope diff` (src/report/diff.c): 0 printed, 2 bad usage, 3 the database could not be
 * read or holds fewer than two runs. */
int diff_main(int argc, char **argv);

/* Runs `pgscope baseline save` (src/report/baseline.c): 0 written, 2 bad usage, 3 the
 * database could not be read or the file not written. */
int baseline_main(int argc, char **argv);

#endif
