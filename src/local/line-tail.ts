/**
 * The last N lines a child process printed. Kept so that a failed start or a test
 * failure can show what the process said, without holding a whole run in memory.
 */
export class LineTail {
  private readonly lines: string[] = []

  constructor (private readonly maxLines = 200, private readonly maxLineChars = 4000) {}

  push (line: string): void {
    // A runaway line (a huge stack or a dumped value) must not evict everything else.
    this.lines.push(line.length > this.maxLineChars ? `${line.slice(0, this.maxLineChars)}…` : line)
    if (this.lines.length > this.maxLines) this.lines.splice(0, this.lines.length - this.maxLines)
  }

  toString (): string {
    return this.lines.join('\n')
  }
}
