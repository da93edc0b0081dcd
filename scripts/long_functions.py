#!/usr/bin/env python3
"""Lists the functions longer than a limit (default 120 lines) in C++/CUDA files.

    scripts/long_functions.py [--limit N] FILE...

A light check for review (clang-tidy's readability-function-size with LineThreshold does the
same from the compile database, but needs a configured build): a function is a brace block whose
opening line looks like a definition (a ')' before the '{', not a control statement, nor a
namespace, class, struct, enum or lambda inside another function); its length counts the lines
from the line of its name to its closing brace. Exits 1 when any is found.
"""
import re
import sys

CONTROL = re.compile(r'^\s*(if|for|while|switch|do|else|catch|try)\b|\b(namespace|class|struct|enum|union)\b')


def strip(text):
    # Comments and string/char literals out, line structure kept.
    text = re.sub(r'//[^\n]*', '', text)
    text = re.sub(r'/\*.*?\*/', lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    text = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"'(\\.|[^'\\\n])*'", "''", text)


def long_functions(path, limit):
    lines = strip(open(path, encoding='utf-8', errors='replace').read()).split('\n')
    found, stack = [], []  # stack entries: (is_function, start line)
    for n, line in enumerate(lines):
        for pos, ch in enumerate(line):
            if ch == '{':
                head = ' '.join(l.strip() for l in lines[max(0, n - 3):n]) + ' ' + line[:pos]
                head = head.split(';')[-1].split('}')[-1].split('{')[-1]
                inside = any(f for f, _ in stack)
                is_fn = (not inside and ')' in head and not CONTROL.search(head.strip())
                         and not head.rstrip().endswith('='))
                start = n
                if is_fn:  # the line where the name stands: back to the line with the '('
                    k = n
                    while k > 0 and '(' not in lines[k]:
                        k -= 1
                    start = k
                stack.append((is_fn, start))
            elif ch == '}' and stack:
                is_fn, start = stack.pop()
                if is_fn and n - start + 1 > limit:
                    found.append((path, start + 1, n - start + 1))
    return found


def main():
    args = sys.argv[1:]
    limit = 120
    if args[:1] == ['--limit']:
        limit, args = int(args[1]), args[2:]
    found = [f for path in args for f in long_functions(path, limit)]
    for path, line, length in found:
        print(f'{path}:{line}: {length} lines')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
