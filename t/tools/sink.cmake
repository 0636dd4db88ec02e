# outpost-sink: the SMTP receiver that plays remote MX hosts in tests and
# benchmarks (loopback only).  See t/tools/sink.c.
outpost_program(outpost-sink DIR tools
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/sink.c
		${CMAKE_CURRENT_LIST_DIR}/sink_session.c
		${CMAKE_CURRENT_LIST_DIR}/sink_rules.c
		${CMAKE_CURRENT_LIST_DIR}/sink_stats.c
	LIBS PkgConfig::LIBEVENT PkgConfig::OPENSSL)
