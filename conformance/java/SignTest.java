// Java SunPKCS11 as a consumer: loads the provider from a SunPKCS11 config file, opens the
// PKCS11 KeyStore with the user PIN, lists its entries, and signs with every private key
// entry through the token (SHA256withECDSA or SHA256withRSA). Each signature is verified
// with the entry's certificate by Java's own providers (SunEC / SunRsaSign, not PKCS#11)
// and written to OUTDIR/<alias>.sig (data in OUTDIR/<alias>.msg) so that the calling
// script can verify it once more with OpenSSL and the public key read from the token.
// Usage: java SignTest <sunpkcs11.cfg> <pin> <outdir>
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.Security;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

public class SignTest {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: SignTest <sunpkcs11.cfg> <pin> <outdir>");
            System.exit(2);
        }
        char[] pin = args[1].toCharArray();
        Path out = Path.of(args[2]);
        Provider p = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p);
        System.out.println("provider: " + p.getName() + " " + p.getInfo());

        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, pin);
        List<String> aliases = new ArrayList<>(Collections.list(ks.aliases()));
        Collections.sort(aliases);
        System.out.println("aliases: " + aliases);

        int signed = 0;
        for (String alias : aliases) {
            if (!ks.isKeyEntry(alias)) {
                System.out.println(alias + ": not a key entry");
                continue;
            }
            PrivateKey key = (PrivateKey) ks.getKey(alias, pin);
            X509Certificate cert = (X509Certificate) ks.getCertificate(alias);
            if (cert == null) throw new AssertionError(alias + ": key entry without certificate");
            String keyAlg = key.getAlgorithm();
            String alg;
            String verifier;
            if (keyAlg.equals("EC")) {
                alg = "SHA256withECDSA";
                verifier = "SunEC";
            } else if (keyAlg.equals("RSA")) {
                alg = "SHA256withRSA";
                verifier = "SunRsaSign";
            } else {
                System.out.println(alias + ": " + keyAlg + " key, not tested");
                continue;
            }
            byte[] data = ("signed by " + alias + " through SunPKCS11").getBytes(StandardCharsets.UTF_8);
            Signature s = Signature.getInstance(alg, p);
            s.initSign(key);
            s.update(data);
            byte[] sig = s.sign();

            Signature v = Signature.getInstance(alg, verifier);
            v.initVerify(cert.getPublicKey());
            v.update(data);
            if (!v.verify(sig)) throw new AssertionError(alias + ": " + alg + " signature does not verify");
            // A changed message must not verify.
            v.initVerify(cert.getPublicKey());
            v.update(("tampered " + alias).getBytes(StandardCharsets.UTF_8));
            if (v.verify(sig)) throw new AssertionError(alias + ": signature verifies for other data");

            Files.write(out.resolve(alias + ".msg"), data);
            Files.write(out.resolve(alias + ".sig"), sig);
            System.out.println(alias + ": " + alg + " signature verified by " + verifier
                    + " (" + cert.getSubjectX500Principal() + ")");
            signed++;
        }
        System.out.println("signed with " + signed + " key entries");
        if (signed < 2) throw new AssertionError("expected at least 2 key entries, signed with " + signed);
    }
}
