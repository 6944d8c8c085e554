export declare const ROOT: string;
export declare function compiledFor(source: string): string | null;
