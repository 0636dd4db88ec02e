# t/bench: programs of the benchmarks (the scripts are t/bench/*.sh).
# outpost-dkim-speed: what one DKIM signature costs the signer, per
# CPU-second (build/tools; signing.sh runs it, README says how by hand).
outpost_program(outpost-dkim-speed DIR tools
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dkim_speed.c
	DEPS outpost_dkim LIBS PkgConfig::OPENSSL)
# outpost-scan-speed: the scan cache's look-up cost per message (MIME leaf
# walk + keyed hashes) on one core (build/tools; scan.sh runs it).
outpost_program(outpost-scan-speed DIR tools
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/scan_speed.c
	DEPS outpost_receive)
