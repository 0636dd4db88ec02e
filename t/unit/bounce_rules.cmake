# Bounce categories: the shipped conf/bounce-categories against a corpus of
# real-world replies (conf/conf_bounce.c, mta/deliver/outcome.c), the
# rules-file errors, bounce { categories }.
outpost_unit_test(bounce_rules_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/bounce_rules_test.c
	DEPS outpost_deliver)
foreach(v "" ${OUTPOST_VARIANTS})
	target_compile_definitions(bounce_rules_test${v} PRIVATE
		OUTPOST_BOUNCE_CATEGORIES="${PROJECT_SOURCE_DIR}/conf/bounce-categories")
endforeach()
