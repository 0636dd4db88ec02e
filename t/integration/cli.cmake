# The operator's CLI (mta/cli/cli.c) against a running outpostd through its
# control socket (mta/control/): rights, audit, queue changes, summary.
outpost_integration_test(cli t/integration/cli_test.py TIMEOUT 600)
# Both programs' --help and --version; where `outpost` finds its
# configuration (OUTPOST_CONF, the system file, the defaults); dkim keygen
# beside a key of the other type.
outpost_integration_test(cli_options t/integration/cli_options_test.py TIMEOUT 300)
# `outpost config` (the effective configuration, its fixpoint, no secret)
# and `outpost log`'s --id, --since, --until and -f from the end.
outpost_integration_test(cli_operate t/integration/cli_operate_test.py TIMEOUT 300)
