# Fuzz harnesses (libFuzzer's LLVMFuzzerTestOneInput).
#
# outpost_fuzz(NAME SOURCES … [DEPS …] [LIBS …] CORPUS DIR)
#   Always: NAME_replay in build/fuzz and build/fuzz-asan (the harness plus
#   t/fuzz/replay.c, which feeds it every file of DIR), and the ctest tests
#   fuzz/NAME and asan/fuzz/NAME.  With OUTPOST_FUZZ=ON (clang): NAME_fuzz,
#   the libFuzzer binary (-fsanitize=fuzzer,address,undefined), in build/fuzz:
#       build/fuzz/NAME_fuzz -max_total_time=60 t/fuzz/corpus/NAME
#   List the sources under test in SOURCES rather than DEPS, so that libFuzzer
#   sees their coverage.
if(OUTPOST_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
	message(WARNING "OUTPOST_FUZZ needs clang (-DCMAKE_C_COMPILER=clang); "
		"building the corpus replays only")
endif()

function(outpost_fuzz name)
	cmake_parse_arguments(A "" "CORPUS" "SOURCES;DEPS;LIBS" ${ARGN})
	set(replay ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/replay.c)
	outpost_program(${name}_replay DIR fuzz SOURCES ${A_SOURCES} ${replay}
		DEPS ${A_DEPS} LIBS ${A_LIBS})
	add_test(NAME fuzz/${name}
		COMMAND ${CMAKE_BINARY_DIR}/fuzz/${name}_replay ${A_CORPUS})
	set_tests_properties(fuzz/${name} PROPERTIES LABELS fuzz)
	if(OUTPOST_ASAN_SUITE)
		add_test(NAME asan/fuzz/${name}
			COMMAND ${CMAKE_BINARY_DIR}/fuzz-asan/${name}_replay
				${A_CORPUS})
		set_tests_properties(asan/fuzz/${name} PROPERTIES
			LABELS "fuzz;asan" ENVIRONMENT "${OUTPOST_SAN_ENV}")
	endif()
	if(OUTPOST_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
		set(t ${name}_fuzz)
		set(fl -fsanitize=fuzzer,address,undefined
			-fno-sanitize-recover=all -fno-omit-frame-pointer)
		add_executable(${t} ${A_SOURCES})
		target_compile_options(${t} PRIVATE ${OUTPOST_WARNINGS} ${fl}
			-O1 -g)
		target_compile_definitions(${t} PRIVATE ${OUTPOST_DEFS})
		target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR})
		target_link_options(${t} PRIVATE ${fl})
		foreach(d ${A_DEPS})
			target_link_libraries(${t} PRIVATE ${d})
		endforeach()
		target_link_libraries(${t} PRIVATE ${A_LIBS})
		set_target_properties(${t} PROPERTIES
			RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
	endif()
endfunction()

# The envelope decoder (queue/record.c) on untrusted bytes.
outpost_fuzz(record
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/record_fuzz.c
		${PROJECT_SOURCE_DIR}/queue/record.c
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/record)
