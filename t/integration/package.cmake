# The Debian package (make package, conf/pkg/): built, linted, installed
# with dpkg, the installed daemon relaying on loopback, then purged.  It
# changes system paths (/usr/sbin, /etc/outpost, /var/lib/outpost), so it
# runs alone; as root only (label "root": `ctest -LE root` leaves it out;
# not root, it says so and is skipped).  Registered once: it makes its own
# Release build, whatever the flavour.
add_test(NAME integration/package
	COMMAND ${OUTPOST_PYTHON} -u ${PROJECT_SOURCE_DIR}/t/integration/package_test.py)
set_tests_properties(integration/package PROPERTIES
	LABELS "integration;package;root"
	ENVIRONMENT "OUTPOST_BIN=${CMAKE_BINARY_DIR}/bin;OUTPOST_TOOLS=${CMAKE_BINARY_DIR}/tools;OUTPOST_LOOPBACK_ONLY=1;PYTHONDONTWRITEBYTECODE=1;OUTPOST_SRC=${PROJECT_SOURCE_DIR}"
	RUN_SERIAL ON SKIP_RETURN_CODE 77 TIMEOUT 600)
