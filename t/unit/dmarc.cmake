# dkim/dmarc.c unit tests: the record parser, org domains and alignment
# (libpsl), the From parser, and the policy lookup against a dnsmasq the
# test program starts on 127.0.0.1 (lookups skip without dnsmasq) and a
# loopback UDP socket that never answers.  Never the system resolver.
if(NOT TARGET outpost_dkim)
	message(WARNING "t/unit/dmarc.cmake: no outpost_dkim (add_subdirectory(dkim) missing?): dmarc_test not built")
	return()
endif()
outpost_unit_test(dmarc_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/dmarc_test.c
	${CMAKE_CURRENT_LIST_DIR}/dns_fixture.c
	DEPS outpost_dkim outpost_dns LIBS PkgConfig::LIBEVENT PkgConfig::PSL)
set_tests_properties(unit/dmarc_test PROPERTIES TIMEOUT 120)
if(OUTPOST_ASAN_SUITE)
	set_tests_properties(asan/unit/dmarc_test PROPERTIES TIMEOUT 120)
endif()

# dkim/spf.c: the SPF record parser and macro expander (pure, table-driven).
outpost_unit_test(spf_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/spf_test.c
	DEPS outpost_dkim outpost_dns)

# dkim/spf.c: check_host() against a dnsmasq the test starts on 127.0.0.1
# (rows skip without it) and a loopback socket that never answers.
outpost_unit_test(spf_eval_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/spf_eval_test.c
	${CMAKE_CURRENT_LIST_DIR}/dns_fixture.c
	DEPS outpost_dkim outpost_dns LIBS PkgConfig::LIBEVENT)
set_tests_properties(unit/spf_eval_test PROPERTIES TIMEOUT 120)
if(OUTPOST_ASAN_SUITE)
	set_tests_properties(asan/unit/spf_eval_test PROPERTIES TIMEOUT 120)
endif()
