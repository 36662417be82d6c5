/* report.h — `pgscope report`: reads the report database and prints what to fix. */
#ifndef PGSCOPE_REPORT_H
#define PGSCOPE_REPORT_H

/* Runs `pgscope report` with the arguments after the subcommand. Returns the exit code:
 * 0 printed, 1 the database could not be read, 2 bad usage. */
int report_main(int argc, char **argv);

#endif
