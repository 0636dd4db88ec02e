# t/tools: helper programs for tests, the demo and benchmarks.
# outpost-load: the SMTP load generator (build/tools, build/tools-asan).
outpost_program(outpost-load DIR tools SOURCES ${CMAKE_CURRENT_LIST_DIR}/load.c
	${CMAKE_CURRENT_LIST_DIR}/load_mime.c LIBS PkgConfig::LIBEVENT PkgConfig::OPENSSL)
