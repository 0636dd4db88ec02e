# The operator's CLI (mta/cli/cli.c) against a running outpostd through its
# control socket (mta/control/): rights, audit, queue changes, summary.
outpost_integration_test(cli t/integration/cli_test.py TIMEOUT 600)
