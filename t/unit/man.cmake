# The man pages are clean under mandoc -T lint and document every key of
# the configuration, every CLI command and every option (man_test.py).
add_test(NAME unit/man COMMAND ${OUTPOST_PYTHON}
	${CMAKE_CURRENT_LIST_DIR}/man_test.py ${PROJECT_SOURCE_DIR}
	${CMAKE_BINARY_DIR})
set_tests_properties(unit/man PROPERTIES LABELS unit)
