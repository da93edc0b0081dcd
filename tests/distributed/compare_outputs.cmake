# The byte comparisons of the distributed CLI tests (cli_*.cmake), in one place.
#   include(compare_outputs.cmake)
#   expect_same_files(REFERENCE_DIR DIR LABEL FILES)   # each file of FILES byte for byte
#   expect_same_tree(REFERENCE_DIR DIR LABEL)          # the same file names below both, each identical
# A difference ends the test (FATAL_ERROR) naming LABEL and the file.

function(expect_same_files reference dir label files)
  foreach(f ${files})
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${reference}/${f}" "${dir}/${f}"
                    RESULT_VARIABLE same)
    if(NOT same EQUAL 0)
      message(FATAL_ERROR "${label}: ${f} differs from ${reference}/${f}")
    endif()
  endforeach()
endfunction()

function(expect_same_tree reference dir label)
  file(GLOB_RECURSE ref_files RELATIVE "${reference}" "${reference}/*")
  file(GLOB_RECURSE got_files RELATIVE "${dir}" "${dir}/*")
  list(SORT ref_files)
  list(SORT got_files)
  if(NOT ref_files STREQUAL got_files)
    message(FATAL_ERROR "${label}: the files below ${dir} are not those below ${reference}")
  endif()
  expect_same_files("${reference}" "${dir}" "${label}" "${ref_files}")
  list(LENGTH ref_files n)
  message(STATUS "${label}: all ${n} files identical to ${reference}")
endfunction()
