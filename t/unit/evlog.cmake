# mta/observe/evlog.c: the delivery log (JSON lines, hashed addresses, scrubbed
# replies, writer thread, reopen, drops).
outpost_unit_test(evlog_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/evlog_test.c DEPS outpost_observe
	LIBS PkgConfig::SODIUM PkgConfig::LIBEVENT Threads::Threads)
foreach(v "" ${OUTPOST_VARIANTS})
	target_compile_definitions(evlog_test${v} PRIVATE
		EVLOG_TEST_PYTHON="${OUTPOST_PYTHON}")
endforeach()
set_tests_properties(unit/evlog_test PROPERTIES TIMEOUT 300)
if(OUTPOST_ASAN_SUITE)
	set_tests_properties(asan/unit/evlog_test PROPERTIES TIMEOUT 600)
endif()
