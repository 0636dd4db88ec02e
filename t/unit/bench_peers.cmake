# `make bench` needs nothing outside the repository: t/bench names no outside
# path and its peer adapters are its own (bench_peers_test.py).
add_test(NAME unit/bench_peers COMMAND ${OUTPOST_PYTHON}
	${CMAKE_CURRENT_LIST_DIR}/bench_peers_test.py ${PROJECT_SOURCE_DIR})
set_tests_properties(unit/bench_peers PROPERTIES LABELS unit)
