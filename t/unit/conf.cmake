# conf/ unit tests.  OUTPOST_CONF_EXAMPLE lets the test parse the shipped
# example configuration (conf/outpost.conf) in both flavours.
outpost_unit_test(conf_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/conf_test.c
	DEPS outpost_conf)
foreach(v "" ${OUTPOST_VARIANTS})
	target_compile_definitions(conf_test${v} PRIVATE
		OUTPOST_CONF_EXAMPLE="${PROJECT_SOURCE_DIR}/conf/outpost.conf")
endforeach()
