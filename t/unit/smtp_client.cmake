# The outbound SMTP client on its own (mta/deliver/smtp_client.c) against
# outpost-sink, started by the test on a free loopback port.
outpost_unit_test(smtp_client_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_client_test.c
	DEPS outpost_deliver)
foreach(v "" ${OUTPOST_VARIANTS})
	if(v STREQUAL "_asan")
		set(_sink_dir ${CMAKE_BINARY_DIR}/tools-asan)
	else()
		set(_sink_dir ${CMAKE_BINARY_DIR}/tools)
	endif()
	target_compile_definitions(smtp_client_test${v} PRIVATE
		OUTPOST_SINK="${_sink_dir}/outpost-sink")
	add_dependencies(smtp_client_test${v} outpost-sink${v})
endforeach()
