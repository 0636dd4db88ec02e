# conf/ unit tests, one program per part of conf/ (core, deliver, dkim,
# observe), all on conf_test_util.c.  OUTPOST_CONF_EXAMPLE lets each parse
# the shipped example configuration (conf/outpost.conf) in both flavours.
foreach(t conf_test conf_test_deliver conf_test_dkim conf_test_observe)
	outpost_unit_test(${t}
		SOURCES ${CMAKE_CURRENT_LIST_DIR}/${t}.c
			${CMAKE_CURRENT_LIST_DIR}/conf_test_util.c
		DEPS outpost_conf)
	foreach(v "" ${OUTPOST_VARIANTS})
		target_compile_definitions(${t}${v} PRIVATE
			OUTPOST_CONF_EXAMPLE="${PROJECT_SOURCE_DIR}/conf/outpost.conf")
	endforeach()
endforeach()
