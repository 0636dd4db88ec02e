# dkim/ unit tests.  dkim_sign_test checks the signing core against
# libopendkim 2.11 (dkim_oracle: a program of its own, because libopendkim
# exports dkim_sign and dkim_init too) and python3-dkim (dkim_verify.py), on
# the corpus in dkim_corpus/.  The oracle is built once, without sanitizers:
# it is the reference, not the code under test, and libopendkim leaks per
# Ed25519 verification.  Nothing touches the network (DKIM_QUERY_FILE and a
# dnsfunc override serve the keys).
if(NOT TARGET outpost_dkim)
	message(WARNING "t/unit/dkim.cmake: no outpost_dkim (add_subdirectory(dkim) missing?): dkim_sign_test not built")
	return()
endif()
add_executable(dkim_oracle ${CMAKE_CURRENT_LIST_DIR}/dkim_oracle.c)
_outpost_flavour(dkim_oracle "")
target_link_libraries(dkim_oracle PRIVATE PkgConfig::OPENDKIM)
set_target_properties(dkim_oracle PROPERTIES
	RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

outpost_unit_test(dkim_sign_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/dkim_sign_test.c
	DEPS outpost_dkim LIBS PkgConfig::OPENSSL PkgConfig::SODIUM Threads::Threads)
foreach(v "" ${OUTPOST_VARIANTS})
	add_dependencies(dkim_sign_test${v} dkim_oracle)
	target_compile_definitions(dkim_sign_test${v} PRIVATE
		DKIM_TEST_ORACLE="${CMAKE_BINARY_DIR}/tests/dkim_oracle"
		DKIM_TEST_PYTHON="${OUTPOST_PYTHON}"
		DKIM_TEST_VERIFY_PY="${CMAKE_CURRENT_LIST_DIR}/dkim_verify.py"
		DKIM_TEST_CORPUS="${CMAKE_CURRENT_LIST_DIR}/dkim_corpus")
endforeach()
set_tests_properties(unit/dkim_sign_test PROPERTIES TIMEOUT 600)
if(OUTPOST_ASAN_SUITE)
	set_tests_properties(asan/unit/dkim_sign_test PROPERTIES TIMEOUT 600)
endif()

# dkim_bodyhash: the streaming body hash in every split equals the whole.
outpost_unit_test(dkim_bodyhash_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dkim_bodyhash_test.c
	DEPS outpost_dkim LIBS PkgConfig::OPENSSL PkgConfig::SODIUM Threads::Threads)
