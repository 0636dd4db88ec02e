# The rooms depend on each other one way (symbols and includes), and no
# source file outgrows FILE_LINES_MAX (t/unit/layering_test.py).
add_test(NAME unit/layering COMMAND ${OUTPOST_PYTHON}
	${CMAKE_CURRENT_LIST_DIR}/layering_test.py ${CMAKE_BINARY_DIR})
set_tests_properties(unit/layering PROPERTIES LABELS unit)
