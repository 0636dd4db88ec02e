# dns/ unit tests.  The test program starts its own DNS servers on 127.0.0.1
# (t/unit/dns_fake_server.py, and dnsmasq when installed) and never uses the
# system resolver.
if(NOT TARGET outpost_dns)
	message(WARNING "t/unit/dns.cmake: no outpost_dns (add_subdirectory(dns) missing?): dns_test not built")
	return()
endif()
outpost_unit_test(dns_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/dns_test.c
	${CMAKE_CURRENT_LIST_DIR}/dns_fixture.c
	DEPS outpost_dns)
foreach(v "" ${OUTPOST_VARIANTS})
	target_compile_definitions(dns_test${v} PRIVATE
		DNS_TEST_PYTHON="${OUTPOST_PYTHON}"
		DNS_FAKE_SERVER="${CMAKE_CURRENT_LIST_DIR}/dns_fake_server.py")
endforeach()
set_tests_properties(unit/dns_test PROPERTIES TIMEOUT 120)
if(OUTPOST_ASAN_SUITE)
	set_tests_properties(asan/unit/dns_test PROPERTIES TIMEOUT 120)
endif()
